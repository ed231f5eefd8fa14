"""`--devices cpu,cpu,cpu,cpu --context-parallel 2`: two groups of two CPU ranks, each
group one engine that splits every edit's sequence across its two processes (gloo).

Through HTTP a group gives the same image as one process with the same seed: a job whose
token count splits evenly, one that does not (diffusers' uneven split), and a multi-
reference job. The job names every device of its group; /readyz and /metrics speak per
group; a running job cancelled stops both ranks at the same step and the group serves on;
a LoRA job loads the LoRA on every rank. A rank killed mid-job (rank 1, not the one the
server talks to) fails that job with 503 device_lost, the whole group restarts, and the
other group serves meanwhile.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import httpx2
import numpy as np
import pytest
from helpers.async_api import get, submit, wait_state, wait_until
from helpers.device_engines import CRASH, group_rank_engine
from helpers.http import image_of, job_of, multipart_parts, post_images
from helpers.images import gradient_png, image_bytes
from helpers.live_server import start_server
from helpers.lora_files import make_lora, save_diffusers
from helpers.servers import make_settings

from pipelines.references.plan import MIN_REFERENCE_TOKEN_BUDGET
from server.api.app import create_app
from server.engine_build import build_engine, build_local_engines

#: Processes start and load on 2 shared cores: minutes, not pytest's default 300 s.
pytestmark = pytest.mark.timeout(1200)

CONFIG = {"prompt": "make it blue", "width": 512, "height": 512, "steps": 2, "seed": 5}
PNG = "multipart/form-data; image/png"
SQUARE, WIDE, RED = gradient_png(256, 256), gradient_png(320, 256), \
    image_bytes(256, 288, color=(210, 40, 30))
GROUPS = ["cpu:0,cpu:1", "cpu:2,cpu:3"]
TIMEOUT = 300


@pytest.fixture(scope="module")
def gate(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("gate")


@pytest.fixture(scope="module")
def loras(tiny_dir, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("loras")
    save_diffusers(make_lora(tiny_dir, seed=1), folder / "red.safetensors")
    return folder


@pytest.fixture(scope="module")
def groups(tiny_dir, tmp_path_factory, gate, loras):
    settings = make_settings(demo=True, demo_dir=tiny_dir, devices=["cpu"] * 4,
                             context_parallel=2, lora_dir=loras,
                             reference_token_budget=MIN_REFERENCE_TOKEN_BUDGET,
                             results_dir=tmp_path_factory.mktemp("results"))
    engines, labels = build_local_engines(settings, partial(group_rank_engine, settings,
                                                            str(gate)))
    server = start_server(create_app(settings, engines, labels=labels), wait_ready=False)
    server.wait_ready(timeout=TIMEOUT)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def alone(tiny_dir, tmp_path_factory, loras):
    """One engine in the test's process: what the group must match."""
    settings = make_settings(demo=True, demo_dir=tiny_dir, lora_dir=loras,
                             reference_token_budget=MIN_REFERENCE_TOKEN_BUDGET,
                             results_dir=tmp_path_factory.mktemp("alone"))
    server = start_server(create_app(settings, build_engine(settings)))
    yield server
    server.stop()


def edit(live, images: list[bytes], **config) -> tuple[dict, np.ndarray]:
    reply = post_images(live.url, {**CONFIG, **config}, images, PNG)
    assert reply.status_code == 200, reply.text
    pixels = np.asarray(image_of(multipart_parts(reply)["output"][1]), dtype=np.int16)
    return job_of(reply), pixels


def tokens(job: dict) -> int:
    """Image tokens of the job's transformer stream: its output and every input as fed."""
    return job["metrics"]["reference_tokens"] + (CONFIG["width"] // 16) * \
        (CONFIG["height"] // 16)


@pytest.mark.parametrize(("name", "images", "even"), [
    ("even", [SQUARE], True), ("uneven", [WIDE], False),
    ("two references", [WIDE, RED, SQUARE], None),
])
def test_a_group_gives_the_image_of_one_process(groups, alone, name, images, even):
    job, split = edit(groups, images)
    _, whole = edit(alone, images)
    if even is not None:  # the stream really splits (un)evenly in two
        assert (tokens(job) % 2 == 0) is even, job["metrics"]
    assert job["served_by"]["device"] in GROUPS
    # Float32 on both sides; the sums run in another order across two ranks: a pixel may
    # round the other way, no more.
    assert np.abs(split - whole).max() <= 1, name


def test_readyz_and_metrics_speak_per_group(groups):
    ready = httpx2.get(f"{groups.url}/readyz").json()
    assert [device["device"] for device in ready["devices"]] == GROUPS
    assert ready["ready_devices"] == {"ready": 2, "needed": 2, "total": 2}
    metrics = httpx2.get(f"{groups.url}/metrics").text
    assert 'kontext_device_jobs_total{device="cpu:0,cpu:1",outcome="completed"}' in metrics \
        or 'kontext_device_jobs_total{device="cpu:2,cpu:3",outcome="completed"}' in metrics


def test_a_lora_job_loads_the_lora_on_every_rank(groups, alone):
    job, split = edit(groups, [SQUARE], loras=["red"], seed=9)
    assert job["metrics"]["loras"]["applied"] == [{"name": "red", "scale": 1.0}]
    _, whole = edit(alone, [SQUARE], loras=["red"], seed=9)
    _, plain = edit(alone, [SQUARE], seed=9)
    # Had a rank run without it, the group's image would not be the LoRA's one.
    assert np.abs(split - whole).max() <= 1 and np.abs(whole - plain).max() > 1


def step_one(url: str, job_id: str) -> dict | None:
    """The job's progress once it reports its first step."""
    progress = get(url, job_id, "job.json").json()["state"].get("progress", {})
    return progress if progress.get("step") == 1 else None


def test_progress_then_cancel_stops_every_rank_and_the_group_serves_on(groups, gate):
    (gate / "hold").write_text("")
    try:
        job_id = submit(groups.url, {**CONFIG, "steps": 4, "seed": 77}, SQUARE).json()["id"]
        wait_until(lambda: list(gate.glob("held-*-77")), timeout=TIMEOUT, what="job held")
        # Rank 0's step events are the job's progress.
        progress = wait_until(lambda: step_one(groups.url, job_id), timeout=TIMEOUT,
                              what="step 1 reported")
        assert progress["steps"] == 4
        assert httpx2.delete(f"{groups.url}/v2/job/async/{job_id}").json()["error"] == \
            "cancelled"
    finally:
        (gate / "hold").unlink(missing_ok=True)
    wait_until(lambda: 'outcome="cancelled"' in httpx2.get(f"{groups.url}/metrics").text,
               timeout=TIMEOUT, what="the group let go of the job")
    assert "device_lost" not in httpx2.get(f"{groups.url}/metrics").text
    done = submit(groups.url, {**CONFIG, "seed": 78}, SQUARE).json()["id"]
    wait_state(groups.url, done, "processed")


def test_a_dead_rank_fails_its_job_the_group_restarts_the_other_serves(groups):
    pids = {w.label: w.engine.pids for w in groups.kontext.engines.workers}
    with ThreadPoolExecutor(2) as pool:
        crashed, survived = pool.map(
            lambda prompt: post_images(groups.url, {**CONFIG, "prompt": prompt}, [SQUARE],
                                       "application/json"), [CRASH, "make it green"])
    assert crashed.status_code == 503, crashed.text
    assert crashed.json()["error"].startswith("device_lost") or \
        "rank 1" in crashed.json()["error"], crashed.json()
    assert survived.status_code == 200
    wait_until(lambda: httpx2.get(f"{groups.url}/readyz").status_code == 200,
               timeout=TIMEOUT, what="the broken group restarted")
    workers = groups.kontext.engines.workers
    restarted = [w.label for w in workers if w.engine.pids != pids[w.label]]
    assert len(restarted) == 1  # both of its processes are new; the other group's are not
    assert all(pid not in pids[restarted[0]] for pid in
               next(w.engine.pids for w in workers if w.label == restarted[0]))
    metrics = httpx2.get(f"{groups.url}/metrics").text
    assert f'kontext_device_jobs_total{{device="{restarted[0]}",outcome="device_lost"}} 1.0' \
        in metrics
    _, again = edit(groups, [SQUARE])
    assert again.size
