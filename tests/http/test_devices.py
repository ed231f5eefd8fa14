"""Several devices behind one queue (--devices), with fake engines in threads: jobs run at
once on different devices, a fault fails one job only, readiness and metrics per device,
and the queue's bound and Retry-After count every device."""

from __future__ import annotations

import json
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

import httpx2
from helpers.async_api import get, submit, wait_state, wait_until
from helpers.fake_engine import FakeEngine
from helpers.http import job_of, post_job
from helpers.images import image_bytes
from test_observability import samples, value

from pipelines.errors import OutOfMemory

PNG = image_bytes(640, 480)
CONFIG = {"prompt": "paint the door red", "width": 512, "height": 512, "steps": 2}
JSON = "application/json"


def two_devices(serve, tmp_path, **settings):
    engines = [FakeEngine(), FakeEngine()]
    live = serve(engines, results_dir=tmp_path, **settings)
    return live, engines


def job_json(live, job_id: str) -> dict:
    return get(live.url, job_id, "job.json").json()


def wait_running(live, job_id: str) -> None:
    """Until the job has left the queue and runs on a device."""
    wait_until(lambda: job_json(live, job_id)["state"]["current"] == "processing",
               what=f"job {job_id} running")


def wait_first(futures: list[Future]) -> set[Future]:
    return wait(futures, return_when=FIRST_COMPLETED).done


def readyz(live) -> tuple[int, dict]:
    reply = httpx2.get(f"{live.url}/readyz")
    return reply.status_code, reply.json()


def test_two_jobs_run_at_once_on_two_devices(serve, tmp_path):
    live, engines = two_devices(serve, tmp_path)
    for engine in engines:
        engine.hold()
    ids = [submit(live.url, {**CONFIG, "seed": seed}, PNG).json()["id"] for seed in (1, 2)]
    # Both are processing while both are held: neither waited for the other to finish.
    for job_id in ids:
        wait_running(live, job_id)
    jobs = [job_json(live, job_id) for job_id in ids]
    assert all(job["state"]["progress"]["queue_position"] == 0 for job in jobs)
    assert readyz(live)[1]["queue"] == {"waiting": 0, "capacity": 16, "running": 2}
    for engine in engines:
        engine.release()
    for job_id in ids:
        wait_state(live.url, job_id, "processed")
    finished = [job_json(live, job_id) for job_id in ids]
    assert {job["served_by"]["device"] for job in finished} == {"cpu:0", "cpu:1"}
    # Recorded times agree: each started before the other finished.
    first, second = finished
    assert first["started_at"] < second["updated_at"] and second["started_at"] < first["updated_at"]


def test_a_fault_on_one_device_fails_that_job_only(serve, tmp_path):
    live, (faulty, healthy) = two_devices(serve, tmp_path)
    faulty.hold()
    healthy.hold()
    with ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(post_job, live.url, {**CONFIG, "seed": seed}, PNG, accept=JSON)
                   for seed in (1, 2)]
        # Each device holds one of the jobs, whichever it took first.
        wait_until(lambda: readyz(live)[1]["queue"]["running"] == 2, what="both running")
        # The faulty device's job fails while the other is still held on the healthy one:
        # the failure did not wait for, or touch, the other device.
        faulty.release(fail=OutOfMemory("out of GPU memory: tried to allocate 4 GiB"))
        first = next(iter(wait_first(futures)))
        assert first.result().status_code == 500
        assert sum(future.done() for future in futures) == 1
        healthy.release()
        replies = [future.result() for future in futures]
    statuses = sorted(reply.status_code for reply in replies)
    assert statuses == [200, 500]
    failed = next(job_of(r) for r in replies if r.status_code == 500)
    assert "out of device memory" in failed["error"]
    done = next(job_of(r) for r in replies if r.status_code == 200)
    assert done["served_by"]["device"] == "cpu:1"
    # The faulty device goes on: both devices serve the next jobs.
    status, body = readyz(live)
    assert status == 200
    assert [(d["device"], d["state"], d["jobs_failed"]) for d in body["devices"]] == [
        ("cpu:0", "ready", 1), ("cpu:1", "ready", 0)]
    with ThreadPoolExecutor(4) as pool:
        later = list(pool.map(lambda seed: post_job(live.url, {**CONFIG, "seed": seed}, PNG,
                                                     accept=JSON), range(10, 14)))
    assert [reply.status_code for reply in later] == [200] * 4


def test_readiness_lists_each_device_and_waits_for_all(serve, tmp_path):
    loaded, loading = FakeEngine(), FakeEngine()
    loading.hold_load()
    live = serve([loaded, loading], results_dir=tmp_path, wait_ready=False)
    wait_until(lambda: readyz(live)[1]["devices"][0]["state"] == "ready", what="cpu:0 ready")
    status, body = readyz(live)
    assert status == 503 and not body["ready"]
    assert [(d["device"], d["state"]) for d in body["devices"]] == [
        ("cpu:0", "ready"), ("cpu:1", "loading")]
    assert body["ready_devices"] == {"ready": 1, "needed": 2, "total": 2}
    refused = post_job(live.url, CONFIG, PNG, accept=JSON)
    assert refused.status_code == 503
    assert "1 of 2 devices are ready" in job_of(refused)["error"]
    loading.release_load()
    live.wait_ready()
    assert [d["state"] for d in readyz(live)[1]["devices"]] == ["ready", "ready"]


def test_partial_readiness_when_allowed(serve, tmp_path):
    engines = [FakeEngine(), FakeEngine()]
    engines[1].fail_load = RuntimeError("CUDA driver initialisation failed")
    live = serve(engines, results_dir=tmp_path, ready_devices=1)
    status, body = readyz(live)
    assert status == 200 and body["ready"]
    assert [(d["device"], d["state"]) for d in body["devices"]] == [
        ("cpu:0", "ready"), ("cpu:1", "failed")]
    assert "CUDA driver initialisation failed" in body["error"]
    # Alive: one device is enough here; jobs run on the device that loaded.
    assert httpx2.get(f"{live.url}/healthz").status_code == 200
    reply = post_job(live.url, CONFIG, PNG, accept=JSON)
    assert reply.status_code == 200 and job_of(reply)["served_by"]["device"] == "cpu:0"


def test_a_failed_device_fails_health_when_all_are_needed(serve, tmp_path):
    engines = [FakeEngine(), FakeEngine()]
    engines[0].fail_load = RuntimeError("no such device")
    live = serve(engines, results_dir=tmp_path, wait_ready=False)
    wait_until(lambda: readyz(live)[1]["devices"][0]["state"] == "failed", what="failed")
    health = httpx2.get(f"{live.url}/healthz")
    assert health.status_code == 500 and not health.json()["ok"]
    assert readyz(live)[0] == 503


def test_queue_bound_and_retry_after_count_every_device(serve, tmp_path):
    live, engines = two_devices(serve, tmp_path, queue_size=1, client_share=1)
    for engine in engines:
        engine.hold()
    with ThreadPoolExecutor(3) as pool:
        # Two running (one per device) and one waiting fill the line: 1 + 2 devices.
        futures = [pool.submit(post_job, live.url, {**CONFIG, "seed": seed}, PNG, accept=JSON)
                   for seed in range(3)]
        wait_until(lambda: readyz(live)[1]["queue"] == {"waiting": 1, "capacity": 1,
                                                         "running": 2}, what="line full")
        refused = post_job(live.url, CONFIG, PNG, accept=JSON)
        assert refused.status_code == 429
        assert int(refused.headers["Retry-After"]) >= 1
        for engine in engines:
            engine.release()
        assert [f.result().status_code for f in futures] == [200] * 3


def test_async_eta_shares_the_queue_between_devices(serve, tmp_path):
    live, engines = two_devices(serve, tmp_path)
    for engine in engines:
        engine.hold()
    ids = [submit(live.url, {**CONFIG, "seed": seed}, PNG).json()["id"] for seed in range(4)]
    for job_id in ids[:2]:
        wait_running(live, job_id)
    # Two run; of the two waiting, the first starts when a device frees, and the second
    # when the other one does: not a whole job (10 s, the default estimate) after it.
    third, fourth = (job_json(live, job_id)["state"]["progress"]
                     for job_id in ids[2:])
    assert (third["queue_position"], fourth["queue_position"]) == (2, 3)
    assert 0 <= fourth["eta_seconds"] - third["eta_seconds"] < 5
    for engine in engines:
        engine.release()
    for job_id in ids:
        wait_state(live.url, job_id, "processed")


def test_metrics_are_labelled_by_device(serve, tmp_path):
    live, (first, second) = two_devices(serve, tmp_path)
    first.hold()
    second.hold()
    ids = [submit(live.url, {**CONFIG, "seed": seed}, PNG).json()["id"] for seed in (1, 2)]
    for job_id in ids:
        wait_running(live, job_id)
    found = samples(live)
    assert value(found, "kontext_device_busy", device="cpu:0") == 1
    assert value(found, "kontext_device_busy", device="cpu:1") == 1
    first.release()
    second.release()
    for job_id in ids:
        wait_state(live.url, job_id, "processed")
    found = samples(live)
    for device in ("cpu:0", "cpu:1"):
        assert value(found, "kontext_device_jobs_total", device=device, outcome="completed") == 1
        assert value(found, "kontext_denoise_step_seconds_count", device=device,
                     model="kontext-dev") == 1
        assert value(found, "kontext_device_busy", device=device) == 0
    assert json.loads(get(live.url, ids[0], "job.json").text)["served_by"]["device"] in {
        "cpu:0", "cpu:1"}
