"""The results folder's quota: over it, a new async job is answered 507 before its body is
read; expired jobs are deleted first; no finished result is ever lost to it; a failed write
fails the job with a named error."""

from __future__ import annotations

import json
import logging
import shutil
import uuid
from pathlib import Path

from helpers.async_api import get, submit, wait_state, wait_until
from helpers.fake_engine import FakeEngine
from helpers.http import post_job
from helpers.images import gradient_png
from helpers.raw_http import connect, read_answer

PNG = gradient_png(640, 480)
CONFIG = {"prompt": "make it autumn", "width": 512, "height": 512, "steps": 2}
MIB = 1024 * 1024


def finished_job(url: str) -> tuple[str, bytes]:
    """Run one async job to completion: its id and its output bytes."""
    reply = submit(url, CONFIG, PNG, accept="image/png")
    assert reply.status_code == 201, reply.text
    job_id = reply.json()["id"]
    wait_state(url, job_id, "processed")
    return job_id, get(url, job_id, "output/output.png").content


def pad(folder: Path, size: int) -> None:
    (folder / "padding.bin").write_bytes(b"\0" * size)


def expire_copy(results: Path, job_id: str) -> Path:
    """A copy of `job_id`'s folder under a new id, its expires_at in the past."""
    copy = results / str(uuid.uuid4())
    shutil.copytree(results / job_id, copy)
    record = json.loads((copy / "job.json").read_text())
    record["job"]["id"] = copy.name
    record["job"]["expires_at"] = "2000-01-01T00:00:00Z"
    (copy / "job.json").write_text(json.dumps(record))
    return copy


def test_at_its_quota_new_async_jobs_get_507_unread_and_finished_ones_stay(serve, tmp_path):
    first = serve(results_dir=tmp_path)
    job_id, output = finished_job(first.url)
    first.stop()
    pad(tmp_path / job_id, 2 * MIB)  # the folder now holds more than a 1 MiB quota
    live = serve(results_dir=tmp_path, results_max_bytes=MIB)
    with connect(live.url) as sock:  # the body is never asked for
        sock.sendall(b"POST /v2/job/async HTTP/1.1\r\nHost: x\r\nContent-Length: 5000000\r\n"
                     b"Content-Type: multipart/form-data; boundary=b\r\n"
                     b"Expect: 100-continue\r\n\r\n")
        refused = read_answer(sock)
    assert refused.status == 507
    assert int(refused.headers["retry-after"]) >= 1
    assert b"results_max_bytes" in refused.body
    # The finished result is still there, whole.
    assert get(live.url, job_id, "output/output.png").content == output
    # The synchronous API writes nothing there and is not limited by it.
    assert post_job(live.url, CONFIG, PNG).status_code == 200


def test_over_the_quota_expired_jobs_are_deleted_first(serve, tmp_path):
    first = serve(results_dir=tmp_path)
    job_id, output = finished_job(first.url)
    first.stop()
    live = serve(results_dir=tmp_path, results_max_bytes=MIB, results_cleanup_seconds=3600)
    expired = expire_copy(tmp_path, job_id)  # expires after the startup cleanup ran
    pad(expired, 2 * MIB)
    live.kontext.async_jobs.store.measure()  # as the next periodic cleanup would
    reply = submit(live.url, CONFIG, PNG, accept="image/png")
    assert reply.status_code == 201, reply.text
    assert not expired.exists()
    assert get(live.url, job_id, "output/output.png").content == output


def test_a_free_space_reserve_larger_than_the_disk_refuses_async_jobs(serve, tmp_path):
    live = serve(results_dir=tmp_path, results_min_free_bytes=2**62)
    reply = submit(live.url, CONFIG, PNG)
    assert reply.status_code == 507
    assert "results_min_free_bytes" in reply.json()["error"]


def test_an_output_that_cannot_be_written_fails_the_job_naming_why(serve, tmp_path, caplog):
    engine = FakeEngine()
    engine.hold()
    live = serve(engine, results_dir=tmp_path)
    reply = submit(live.url, CONFIG, PNG, accept="image/png")
    assert reply.status_code == 201
    job_id = reply.json()["id"]
    # Its folder becomes a file: every write into it fails, as on a full or broken disk.
    shutil.rmtree(tmp_path / job_id)
    (tmp_path / job_id).write_text("not a folder")
    with caplog.at_level(logging.INFO):
        engine.release()
        # The job's last word is its log line (written after it leaves the active set).
        wait_until(lambda: failures(caplog), what="the job's failure logged")
    assert "the output could not be saved to the results folder" in failures(caplog)[0]
    assert "internal server error" not in caplog.text


def failures(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "job failed (507" in r.getMessage()]
