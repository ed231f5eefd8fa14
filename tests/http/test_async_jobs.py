"""The async API (/v2/job/async) end to end through a real server on loopback (fake engine)."""

import uuid
from datetime import datetime, timedelta

import httpx2
import pytest
from helpers.async_api import events, get, submit, wait_state, wait_until
from helpers.fake_engine import FakeEngine
from helpers.http import image_of
from helpers.images import gradient_png

PNG = gradient_png(640, 480)
CONFIG = {"prompt": "make the sky stormy", "width": 512, "height": 576, "steps": 4, "seed": 7}
SLOW = {**CONFIG, "steps": 50}  # 50 steps × 60 ms: three seconds to watch it run


def parse(text: str) -> datetime:
    return datetime.fromisoformat(text)


@pytest.fixture
def live(serve, tmp_path):
    return serve(engine=FakeEngine(step_seconds=0.06), results_dir=tmp_path,
                 shutdown_grace_seconds=0)


def test_lifecycle_progress_events_and_output(live):
    reply = submit(live.url, SLOW, PNG, accept="image/png")
    assert reply.status_code == 201, reply.text
    job = reply.json()
    job_id = job["id"]
    assert job["state"]["current"] in ("queued", "processing")
    assert job["config"]["seed"] == 7 and job["config"]["steps"] == 50
    # Local retention (24 h by default), not the hosted five minutes.
    assert parse(job["expires_at"]) - parse(job["created_at"]) == timedelta(hours=24)

    def running():
        body = get(live.url, job_id, "job.json").json()
        return body if body["state"].get("progress", {}).get("step", 0) >= 2 else None

    body = running() or wait_until(running, what="two steps done")
    progress = body["state"]["progress"]
    assert progress["steps"] == 50 and progress["queue_position"] == 0
    assert 0 <= progress["eta_seconds"] < 60
    assert get(live.url, job_id, "job.state.current").text == "processing"
    assert get(live.url, job_id, "output").json() == []

    seen = events(live.url, job_id)
    names = [name for name, _ in seen]
    assert names[-1] == "processed" and set(names[:-1]) == {"progress"}, names
    steps = [data["state"]["progress"]["step"] for name, data in seen if name == "progress"]
    assert steps == sorted(steps) and steps[-1] > steps[0]
    final = seen[-1][1]
    assert final["state"] == {"current": "completed"} and final["metrics"]["elapsed"] > 0

    state = get(live.url, job_id, "job.state.current")
    assert (state.status_code, state.text) == (200, "processed")
    assert state.headers["content-type"].startswith("text/plain")
    assert get(live.url, job_id, "job.json").json() == final
    assert get(live.url, job_id, "output").json() == ["output.png"]
    output = get(live.url, job_id, "output/output.png")
    assert output.headers["content-type"] == "image/png"
    image = image_of(output.content)
    assert (image.format, image.size) == ("PNG", (512, 576))
    # A finished job's events stream is its final event alone.
    assert [name for name, _ in events(live.url, job_id)] == ["processed"]


def test_default_output_is_jpeg_and_json_body_jobs_fail_readably(live):
    job_id = submit(live.url, CONFIG, PNG).json()["id"]
    wait_state(live.url, job_id, "processed")
    assert get(live.url, job_id, "output").json() == ["output.jpg"]
    assert image_of(get(live.url, job_id, "output/output.jpg").content).format == "JPEG"
    missing = get(live.url, job_id, "output/output.png")
    assert missing.status_code == 404 and "no output" in missing.json()["error"]


def test_queue_position_and_cancel(live):
    engine: FakeEngine = live.kontext.engines.workers[0].engine
    first = submit(live.url, SLOW, PNG).json()["id"]
    second = submit(live.url, {**SLOW, "seed": 8}, PNG).json()["id"]
    wait_until(lambda: engine.requests, what="first job running")
    queued = get(live.url, second, "job.json").json()["state"]["progress"]
    assert queued["queue_position"] == 1 and queued["step"] == 0
    assert queued["eta_seconds"] > 0

    # Cancel the queued one: it never reaches the engine.
    reply = httpx2.delete(f"{live.url}/v2/job/async/{second}")
    assert reply.status_code == 200
    assert (reply.json()["state"]["current"], reply.json()["error"]) == ("failed", "cancelled")
    # Cancel the running one: the engine is interrupted.
    cancelled = httpx2.delete(f"{live.url}/v2/job/async/{first}").json()
    assert cancelled["error"] == "cancelled"
    wait_until(lambda: engine.cancelled, what="engine interrupted")
    assert [r.seed for r in engine.cancelled] == [7]
    assert get(live.url, first, "job.state.current").text == "failed"
    assert get(live.url, first, "output").json() == []
    # The worker is free again, and the cancelled job was not run.
    done = submit(live.url, {**CONFIG, "seed": 9}, PNG).json()["id"]
    wait_state(live.url, done, "processed")
    assert [r.seed for r in engine.requests] == [7, 9]
    # Cancelling a finished job changes nothing.
    assert httpx2.delete(f"{live.url}/v2/job/async/{done}").json()["state"]["current"] == \
        "completed"


def test_accepted_jobs_wait_for_a_full_engine_queue(serve, tmp_path):
    engine = FakeEngine()
    engine.hold()
    live = serve(engine=engine, results_dir=tmp_path, queue_size=1)
    seeds = (1, 2, 3, 4)
    ids = [submit(live.url, {**CONFIG, "seed": seed}, PNG).json()["id"] for seed in seeds]
    # One job runs, one waits in the engine queue, the others wait for a place in it.
    wait_until(lambda: engine.requests, what="first job running")
    progress = [get(live.url, job_id, "job.json").json()["state"]["progress"]
                for job_id in ids]
    assert [p["queue_position"] for p in progress] == [0, 1, 2, 3]
    assert 0 < progress[2]["eta_seconds"] < progress[3]["eta_seconds"]
    engine.release()
    for job_id in ids:
        wait_state(live.url, job_id, "processed")
    assert [r.seed for r in live.kontext.engines.workers[0].engine.requests] == list(seeds)


@pytest.mark.parametrize("path", ["job.state.current", "job.json", "output",
                                  "output/output.jpg", "events"])
def test_unknown_jobs_are_404(live, path):
    for job_id in (str(uuid.uuid4()), "..", "not-a-job"):
        reply = get(live.url, job_id, path)
        assert reply.status_code == 404, (job_id, reply.text)
    assert httpx2.delete(f"{live.url}/v2/job/async/{uuid.uuid4()}").status_code == 404


def test_expired_jobs_are_404_and_deleted(serve, tmp_path):
    live = serve(results_dir=tmp_path, results_retention_seconds=2,
                 results_cleanup_seconds=0.1)
    job = submit(live.url, CONFIG, PNG).json()
    assert parse(job["expires_at"]) - parse(job["created_at"]) == timedelta(seconds=2)
    wait_state(live.url, job["id"], "processed")
    assert (tmp_path / job["id"] / "output.jpg").is_file()
    wait_until(lambda: get(live.url, job["id"], "job.json").status_code == 404,
               what="expiry")
    wait_until(lambda: not (tmp_path / job["id"]).exists(), what="cleanup")


def test_full_async_queue_is_429(serve, tmp_path):
    live = serve(engine=FakeEngine(step_seconds=0.05), results_dir=tmp_path,
                 async_queue_size=1, shutdown_grace_seconds=0)
    first = submit(live.url, SLOW, PNG).json()["id"]
    reply = submit(live.url, CONFIG, PNG)
    assert reply.status_code == 429
    assert int(reply.headers["retry-after"]) >= 1
    assert "async queue is full" in reply.json()["error"]
    httpx2.delete(f"{live.url}/v2/job/async/{first}")
    assert submit(live.url, CONFIG, PNG).status_code == 201


def test_validation_and_auth_answered_at_once(serve, tmp_path):
    live = serve(results_dir=tmp_path, tokens=["s3cret-token-0f1e"])
    bad = submit(live.url, {**CONFIG, "width": 1000}, PNG, token="s3cret-token-0f1e")
    assert bad.status_code == 400
    assert bad.json()["error"] == "config.width: must be a multiple of 16, got 1000"
    assert bad.json()["state"]["current"] == "failed"
    broken = submit(live.url, CONFIG, PNG[:200], token="s3cret-token-0f1e")
    assert broken.status_code == 400
    assert broken.json()["error"].startswith("input: "), broken.json()
    assert not list(tmp_path.iterdir()), "a refused job left a record"
    refused = submit(live.url, CONFIG, PNG)
    assert refused.status_code == 401 and "token is invalid" in refused.text
    job_id = submit(live.url, CONFIG, PNG, token="s3cret-token-0f1e").json()["id"]
    assert get(live.url, job_id, "job.json").status_code == 401
    wait_state(live.url, job_id, "processed", token="s3cret-token-0f1e")
    assert get(live.url, job_id, "output/output.jpg", token="s3cret-token-0f1e").status_code == 200
    assert not list(tmp_path.glob("*/*.tmp")), "temporary files left behind"


def test_forwarded_job_types_run_async(serve, tmp_path, monkeypatch):
    from helpers.fake_upstream import FakeUpstream

    fake = FakeUpstream(tmp_path).start()
    try:
        monkeypatch.setenv("TEST_HOSTED_TOKEN", "upstream-token")
        live = serve(results_dir=tmp_path / "results", upstream="hosted",
                     hosted_url=f"{fake.url()}/v2", hosted_token_env="TEST_HOSTED_TOKEN",
                     upstream_ca_file=fake.ca_file)
        reply = submit(live.url, {"prompt": "make it blue", "seed": 3}, PNG,
                       accept="image/png", job_type="inference.flux-kontext.pro.img2img.v2")
        assert reply.status_code == 201, reply.text
        job_id = reply.json()["id"]
        wait_state(live.url, job_id, "processed")
        assert get(live.url, job_id, "job.json").json()["served_by"]["backend"] == \
            "upstream-hosted"
        assert image_of(get(live.url, job_id, "output/output.png").content).format == "PNG"
        assert len(fake.requests("hosted")) == 1
    finally:
        fake.stop()
