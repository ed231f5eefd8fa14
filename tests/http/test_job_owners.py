"""Async jobs belong to the token that created them: another token gets 404 for every read,
the events, the outputs and DELETE, as if the job did not exist; an admin token sees all.
The owner is on disk with the record (as a fingerprint, never the token) and survives a
restart."""

from __future__ import annotations

import json

import httpx2
import pytest
from helpers.async_api import events, get, headers_for, submit, wait_state
from helpers.fake_engine import FakeEngine
from helpers.images import gradient_png

PNG = gradient_png(640, 480)
CONFIG = {"prompt": "make the sky stormy", "width": 512, "height": 512, "steps": 2}
ALICE, BOB, ADMIN = "alice-token-1f2e3d4c5b", "bob-token-6a7b8c9d0e1f", "admin-token-aa11bb22cc"
READS = ["job.json", "job.state.current", "output", "output/output.jpg"]


def delete(url: str, job_id: str, token: str) -> httpx2.Response:
    return httpx2.delete(f"{url}/v2/job/async/{job_id}", headers=headers_for(token=token))


@pytest.fixture
def team(serve, tmp_path):
    """A server with two user tokens and an admin token."""
    def start(**settings):
        return serve(results_dir=tmp_path, tokens=[ALICE, BOB], admin_tokens=[ADMIN],
                     **settings)
    return start


def assert_hidden_from(url: str, job_id: str, token: str) -> None:
    unknown = "00000000-0000-4000-8000-000000000000"
    for path in [*READS, "events"]:
        reply, nothing = get(url, job_id, path, token), get(url, unknown, path, token)
        assert reply.status_code == 404, (path, reply.text)
        # Word for word what an unknown job gets: nothing tells a stranger it exists.
        assert reply.json()["error"].replace(job_id, "ID") == \
            nothing.json()["error"].replace(unknown, "ID")
    assert delete(url, job_id, token).status_code == 404


def test_another_token_sees_nothing_of_a_finished_job(team):
    live = team()
    job_id = submit(live.url, CONFIG, PNG, token=ALICE).json()["id"]
    wait_state(live.url, job_id, "processed", token=ALICE)
    assert_hidden_from(live.url, job_id, BOB)
    for path in READS:
        assert get(live.url, job_id, path, ALICE).status_code == 200, path
    assert [name for name, _ in events(live.url, job_id, ALICE)] == ["processed"]


def test_another_token_cannot_cancel_a_running_job_but_the_admin_can(team):
    engine = FakeEngine()
    engine.hold()
    live = team(engine=engine)
    job_id = submit(live.url, CONFIG, PNG, token=ALICE).json()["id"]
    assert_hidden_from(live.url, job_id, BOB)
    assert get(live.url, job_id, "job.state.current", ALICE).text == "processing"
    # The admin token sees every job, and may cancel it.
    assert get(live.url, job_id, "job.json", ADMIN).status_code == 200
    cancelled = delete(live.url, job_id, ADMIN)
    assert cancelled.status_code == 200 and cancelled.json()["error"] == "cancelled"
    engine.release()
    wait_state(live.url, job_id, "failed", token=ALICE)


def test_owners_survive_a_restart_and_the_disk_holds_no_token(team, tmp_path):
    first = team()
    job_id = submit(first.url, CONFIG, PNG, token=BOB).json()["id"]
    wait_state(first.url, job_id, "processed", token=BOB)
    first.stop()
    record = (tmp_path / job_id / "job.json").read_text()
    assert json.loads(record)["owner"]
    assert BOB not in record and ALICE not in record
    second = team()
    assert get(second.url, job_id, "job.json", BOB).status_code == 200
    assert_hidden_from(second.url, job_id, ALICE)


def test_without_tokens_every_client_sees_every_job(serve, tmp_path):
    live = serve(results_dir=tmp_path)
    job_id = submit(live.url, CONFIG, PNG).json()["id"]
    wait_state(live.url, job_id, "processed")
    assert get(live.url, job_id, "output/output.jpg").status_code == 200
