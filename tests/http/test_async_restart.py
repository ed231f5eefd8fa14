"""Async results survive a restart; jobs left unfinished are failed with the reason."""

import subprocess
import sys
from pathlib import Path

from helpers.async_api import get, submit, wait_state, wait_until
from helpers.fake_engine import FakeEngine
from helpers.images import gradient_png

PNG = gradient_png(640, 480)
CONFIG = {"prompt": "make the sky stormy", "width": 512, "height": 512, "steps": 2, "seed": 7}
SLOW = {**CONFIG, "steps": 40}
TESTS = Path(__file__).parent.parent


def running(url: str, job_id: str) -> bool:
    return get(url, job_id, "job.json").json()["state"].get("progress", {}).get("step", 0) > 0


def finish_one_and_start_another(url: str) -> tuple[str, str, bytes]:
    """(id of a finished job, id of a running one, the finished job's output)."""
    done = submit(url, CONFIG, PNG, accept="image/webp").json()["id"]
    wait_state(url, done, "processed")
    output = get(url, done, "output/output.webp").content
    slow = submit(url, SLOW, PNG).json()["id"]
    wait_until(lambda: running(url, slow), what="slow job running")
    return done, slow, output


def assert_restarted(url: str, done: str, output: bytes, slow: str, reason: str) -> None:
    assert get(url, done, "job.state.current").text == "processed"
    assert get(url, done, "output").json() == ["output.webp"]
    again = get(url, done, "output/output.webp")
    assert again.headers["content-type"] == "image/webp" and again.content == output
    assert get(url, slow, "job.state.current").text == "failed"
    job = get(url, slow, "job.json").json()
    assert job["state"] == {"current": "failed"} and reason in job["error"], job
    assert get(url, slow, "output").json() == []


def test_stopped_server_results_survive(serve, tmp_path):
    first = serve(engine=FakeEngine(step_seconds=0.1), results_dir=tmp_path,
                  shutdown_grace_seconds=0)
    done, slow, output = finish_one_and_start_another(first.url)
    first.stop()
    second = serve(results_dir=tmp_path)
    assert_restarted(second.url, done, output, slow, "shut down before the job finished")


def test_killed_server_jobs_are_failed_at_startup(serve, tmp_path):
    child = subprocess.Popen([sys.executable, "-m", "helpers.killable_server", str(tmp_path)],
                             stdout=subprocess.PIPE, text=True, cwd=TESTS)
    try:
        url = child.stdout.readline().strip()
        assert url.startswith("http://"), "the server process did not start"
        done, slow, output = finish_one_and_start_another(url)
    finally:
        child.kill()  # SIGKILL: no shutdown code runs
        child.wait()
    live = serve(results_dir=tmp_path)
    assert_restarted(live.url, done, output, slow, "server stopped before the job finished")
