"""A finished job is freed at once, with its decoded inputs and its output: nothing keeps it
in a reference cycle waiting for Python's full garbage collection, which runs rarely (a
soak held hundreds of megabytes of finished jobs that way)."""

from __future__ import annotations

import gc

import pytest
from helpers.async_api import submit, wait_state, wait_until
from helpers.fake_engine import FakeEngine
from helpers.http import post_job
from helpers.images import gradient_png

from pipelines.errors import EngineFailure
from server.jobs.job import Job

PNG = gradient_png(640, 480)
CONFIG = {"prompt": "make it red", "width": 512, "height": 512, "steps": 2}


@pytest.fixture
def no_cycle_collector():
    """Only reference counts free objects while the test runs."""
    gc.collect()
    gc.disable()
    yield
    gc.enable()


def jobs_alive() -> int:
    return sum(isinstance(thing, Job) for thing in gc.get_objects())


def test_finished_jobs_are_freed_by_reference_counting(serve, tmp_path, no_cycle_collector):
    engine = FakeEngine()
    live = serve(engine, results_dir=tmp_path, job_timeout_seconds=0.5)
    engine.hold()
    assert post_job(live.url, CONFIG, PNG).status_code == 504  # past its time limit
    engine.release()
    assert post_job(live.url, CONFIG, PNG).status_code == 200
    engine.fail_next.append(EngineFailure("out of luck"))
    assert post_job(live.url, CONFIG, PNG).status_code == 500
    job_id = submit(live.url, CONFIG, PNG).json()["id"]
    wait_state(live.url, job_id, "processed")
    # The answers are out; the jobs are gone from the service, and from memory.
    wait_until(lambda: not live.kontext.service.jobs, what="every job ended")
    wait_until(lambda: jobs_alive() == 0, timeout=10, what="every job freed")
