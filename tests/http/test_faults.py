"""Failure isolation: one bad job fails alone and the next one runs.

Injected faults inside the real pipeline (tiny checkpoint), the per-job time limit, and a
client that disconnects mid-job. (FakeEngine failures and OOM are in test_http_api.py.)
"""

from __future__ import annotations

import threading
import time

import httpx2
import pytest
from helpers.fake_engine import FakeEngine
from helpers.http import post_job
from helpers.images import gradient_png
from helpers.live_server import start_server
from helpers.servers import make_settings

from server.api.app import create_app

PNG = gradient_png(640, 480)
CONFIG = {"prompt": "make it look like winter", "width": 512, "height": 512, "steps": 1,
          "seed": 3}


def expect_failed(reply: httpx2.Response, status: int, message: str) -> dict:
    assert reply.status_code == status, reply.text
    job = reply.json()
    assert job["state"]["current"] == "failed"
    assert message in job["error"]
    return job


@pytest.fixture(scope="module")
def tiny_live(tiny_engine):
    live = start_server(create_app(make_settings(), tiny_engine))
    yield live
    live.stop()


def raise_once(monkeypatch, module, error: BaseException) -> list[int]:
    """Make `module.forward` raise `error` on its next call only; returns the call log."""
    calls: list[int] = []
    original = module.forward

    def forward(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise error
        return original(*args, **kwargs)

    monkeypatch.setattr(module, "forward", forward)
    return calls


def test_pipeline_exception_and_cuda_oom_fail_alone(tiny_live, tiny_engine, monkeypatch):
    import torch

    transformer = tiny_engine.pipe.transformer
    raise_once(monkeypatch, transformer, RuntimeError("injected transformer fault"))
    reply = post_job(tiny_live.url, CONFIG, PNG, "application/json")
    expect_failed(reply, 500, "the job failed while running: RuntimeError: injected")

    monkeypatch.undo()
    oom = torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
    calls = raise_once(monkeypatch, transformer, oom)
    reply = post_job(tiny_live.url, CONFIG, PNG, "application/json")
    expect_failed(reply, 500, "the job ran out of device memory")

    assert post_job(tiny_live.url, CONFIG, PNG, "image/png").status_code == 200
    assert len(calls) > 1  # the next job really ran, through the same transformer
    assert httpx2.get(f"{tiny_live.url}/healthz").json()["ok"] is True


def test_job_past_its_time_limit_is_stopped(serve):
    # Each step takes 1 s; the limit is 0.3 s: the answer comes at the limit, while the
    # engine is still inside its first step, and the engine is told to stop.
    engine = FakeEngine(step_seconds=1.0)
    live = serve(engine, job_timeout_seconds=0.3)
    reply = post_job(live.url, {**CONFIG, "steps": 20}, PNG, "application/json")
    expect_failed(reply, 504, "per-job time limit of 0.3 s (job_timeout_seconds)")
    assert engine.cancelled == []  # answered before the engine reached its next step
    deadline = time.monotonic() + 10
    while not engine.cancelled and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [r.steps for r in engine.cancelled] == [20]
    engine.step_seconds = 0.0
    assert post_job(live.url, CONFIG, PNG).status_code == 200


def test_disconnect_mid_job_cancels_it_and_frees_the_engine(serve):
    engine = FakeEngine(step_seconds=0.2)
    live = serve(engine)
    with pytest.raises(httpx2.ReadTimeout):
        post_job(live.url, {**CONFIG, "steps": 50}, PNG, timeout=0.5)
    # A job queued behind the abandoned one runs once the engine has stopped it.
    replies: list[httpx2.Response] = []
    waiting = threading.Thread(target=lambda: replies.append(post_job(live.url, CONFIG, PNG)))
    waiting.start()
    waiting.join(timeout=30)
    assert [r.status_code for r in replies] == [200]
    assert [r.steps for r in engine.cancelled] == [50]
    assert len(engine.requests) == 2


def test_engine_that_ignores_its_cancel_marks_the_server_unhealthy(serve, monkeypatch):
    import server.engines.worker

    # A step that outlasts the time limit plus the "stuck" allowance stands in for a hung
    # device: /healthz says so (so an orchestrator restarts it) until the engine returns.
    monkeypatch.setattr(server.engines.worker, "STUCK_SECONDS", 0.3)
    engine = FakeEngine(step_seconds=3.0)
    live = serve(engine, job_timeout_seconds=0.2)
    expect_failed(post_job(live.url, CONFIG, PNG, "application/json"), 504, "time limit")
    health = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not (health and health[-1] == 200 and 500 in health):
        health.append(httpx2.get(f"{live.url}/healthz").status_code)
        time.sleep(0.05)
    assert 500 in health and health[-1] == 200
    engine.step_seconds = 0.0
    assert post_job(live.url, CONFIG, PNG).status_code == 200
