"""`--devices cpu,cpu`: two tiny engines, each in a process of its own (or in threads),
behind one server.

Two jobs run at the same time (both are held after their first step until each device has
one, however the devices took them; their recorded times overlap); a job that
kills its device's process fails alone (503 device_lost) while a job on the other device
finishes, and the lost device is restarted and serves again; /readyz and /metrics speak
per device.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import httpx2
import pytest
from helpers.async_api import wait_until
from helpers.device_engines import CRASH, crashing_gated_tiny_engine, gated_tiny_engine
from helpers.http import job_of, post_job
from helpers.images import image_bytes
from helpers.live_server import start_server
from helpers.lora_files import make_lora, save_diffusers
from helpers.servers import make_settings

from server.api.app import create_app
from server.engine_build import build_local_engines

PNG = image_bytes(640, 480)
CONFIG = {"prompt": "make it blue", "width": 512, "height": 512, "steps": 4}
JSON = "application/json"


@pytest.fixture(scope="module")
def gate(tmp_path_factory) -> Path:
    """The folder through which tests hold the devices' jobs (helpers.device_engines)."""
    return tmp_path_factory.mktemp("gate")


@pytest.fixture(scope="module")
def live(tiny_dir, tmp_path_factory, gate):
    loras = tmp_path_factory.mktemp("loras")
    save_diffusers(make_lora(tiny_dir, seed=1), loras / "red.safetensors")
    settings = make_settings(demo=True, demo_dir=tiny_dir, devices=["cpu", "cpu"],
                             warmup=False, lora_dir=loras,
                             results_dir=tmp_path_factory.mktemp("results"))
    engines, labels = build_local_engines(
        settings, partial(crashing_gated_tiny_engine, settings, str(gate)))
    server = start_server(create_app(settings, engines, labels=labels), wait_ready=False)
    server.wait_ready(timeout=240)
    yield server
    server.stop()


def run_jobs(live, prompts: list[str]) -> list[httpx2.Response]:
    with ThreadPoolExecutor(len(prompts)) as pool:
        return list(pool.map(lambda p: post_job(live.url, {**CONFIG, "prompt": p}, PNG,
                                                accept=JSON, timeout=240), prompts))


def run_held(live, gate: Path, prompts: list[str]) -> tuple[list[httpx2.Response], set[str]]:
    """Run the jobs at once, each held after its first step until all of them are: they
    ran at the same time, whichever device took which. Their answers, and the ids of the
    processes that ran them."""
    (gate / "hold").write_text("")
    try:
        with ThreadPoolExecutor(len(prompts)) as pool:
            futures = [pool.submit(post_job, live.url, {**CONFIG, "prompt": p, "seed": seed},
                                   PNG, accept=JSON, timeout=240)
                       for seed, p in enumerate(prompts)]
            held = wait_until(lambda: len(markers := list(gate.glob("held-*"))) == len(prompts)
                              and markers, timeout=240, what="every job held at once")
            (gate / "hold").unlink()
            replies = [future.result() for future in futures]
    finally:
        (gate / "hold").unlink(missing_ok=True)
        for marker in gate.glob("held-*"):
            marker.unlink()
    return replies, {marker.name.split("-")[1] for marker in held}


def test_two_jobs_run_at_the_same_time_on_two_processes(live, gate):
    replies, pids = run_held(live, gate, ["make it blue", "red"])
    assert len(pids) == 2  # one process each
    first, second = (job_of(reply) for reply in replies)
    assert first["state"]["current"] == second["state"]["current"] == "completed"
    assert {first["served_by"]["device"], second["served_by"]["device"]} == {"cpu:0", "cpu:1"}
    # Overlap, from the recorded times: each started before the other finished.
    assert first["started_at"] < second["updated_at"]
    assert second["started_at"] < first["updated_at"]


def test_a_crashed_device_fails_its_job_only_and_comes_back(live):
    pids = {worker.label: worker.engine.pid for worker in live.kontext.engines.workers}
    crashed, survived = run_jobs(live, [CRASH, "make it green"])
    assert crashed.status_code == 503
    error = job_of(crashed)["error"]
    assert "died (exit code 9)" in error and "submit it again" in error
    assert survived.status_code == 200
    # The lost device restarts (a new process) and serves again; the other never stopped.
    wait_until(lambda: httpx2.get(f"{live.url}/readyz").status_code == 200, timeout=240,
               what="the lost device restarted")
    workers = live.kontext.engines.workers
    restarted = [w.label for w in workers if w.engine.pid != pids[w.label]]
    assert len(restarted) == 1
    devices = httpx2.get(f"{live.url}/readyz").json()["devices"]
    assert [d["state"] for d in devices] == ["ready", "ready"]
    again = run_jobs(live, ["one", "two"])
    assert [reply.status_code for reply in again] == [200, 200]
    metrics = httpx2.get(f"{live.url}/metrics").text
    assert f'kontext_device_jobs_total{{device="{restarted[0]}",outcome="device_lost"}} 1.0' \
        in metrics


def test_thread_workers_load_one_at_a_time_and_run_at_once(tiny_dir, tmp_path, gate):
    import torch

    threads = torch.get_num_threads()  # thread workers set it for the whole process
    settings = make_settings(demo=True, demo_dir=tiny_dir, devices=["cpu", "cpu"],
                             device_workers="thread", results_dir=tmp_path)
    engines, labels = build_local_engines(settings, partial(gated_tiny_engine, settings,
                                                            str(gate)))
    # Loading two pipelines at once in one process races on diffusers' process-wide state
    # ("Cannot copy out of meta tensor"): the pool loads them one after the other.
    server = start_server(create_app(settings, engines, labels=labels), wait_ready=False)
    try:
        server.wait_ready(timeout=240)
        replies, _pids = run_held(server, gate, ["make it blue", "red"])
        first, second = (job_of(reply) for reply in replies)
        assert {first["served_by"]["device"], second["served_by"]["device"]} == {"cpu:0", "cpu:1"}
        assert first["started_at"] < second["updated_at"]
        assert second["started_at"] < first["updated_at"]
    finally:
        server.stop()
        torch.set_num_threads(threads)



def test_loras_on_devices_in_processes(live):
    """A LoRA folder with --devices: listed by the server, switched in each device's
    process, cache counters summed in /metrics."""
    listing = httpx2.get(f"{live.url}/v2/loras").json()
    assert [entry["name"] for entry in listing["loras"]] == ["red"]
    config = {**CONFIG, "prompt": "make it red", "seed": 3, "loras": ["red"]}
    with ThreadPoolExecutor(2) as pool:
        replies = list(pool.map(lambda _: post_job(live.url, config, PNG, accept=JSON,
                                                   timeout=240), range(2)))
    jobs = [job_of(reply) for reply in replies]
    assert [reply.status_code for reply in replies] == [200, 200], jobs
    assert all(job["metrics"]["loras"]["applied"] == [{"name": "red", "scale": 1.0}]
               for job in jobs), jobs
    # Each device that ran a job loaded the LoRA into its own cache once.
    devices = {job["served_by"]["device"] for job in jobs}
    metrics = httpx2.get(f"{live.url}/metrics").text
    assert f"kontext_lora_cache_misses_total {float(len(devices))}" in metrics, metrics
