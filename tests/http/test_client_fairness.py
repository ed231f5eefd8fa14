"""Per-client fairness: one client (a token, or an address on a server without tokens)
holds at most its share (client_share, half by default) of the upload memory and of each
queue. Slow uploads lock out their sender, not everyone; its waiting async jobs do not
hold up others'. And a full queue's Retry-After and an async job's ETA count the work
ahead: the running job's remaining steps plus the queued jobs' steps."""

from __future__ import annotations

import contextlib
import io
import os
import select
import socket
import threading
from urllib.parse import urlsplit

import httpx2
import pytest
from helpers.async_api import get, submit, wait_until
from helpers.fake_engine import FakeEngine
from helpers.http import post_job
from helpers.images import image_bytes
from helpers.raw_http import read_answer
from PIL import Image

CONFIG = {"prompt": "make it green", "width": 512, "height": 512, "steps": 1}
ABUSER, VICTIM = "abuser-token-0f9e8d7c6b", "victim-token-1a2b3c4d5e"
BOUNDARY = "fairness"
MB = 1000 * 1000
#: Stalled uploads must outlive the test: no body-rate cut-off meanwhile.
PATIENT = {"body_timeout_seconds": 300}


def stalled_upload(url: str, size: int, token: str | None = None,
                   source: str | None = None) -> socket.socket:
    """A connection that sent the headers of a `size`-byte job and the first bytes of its
    body, then stalls (as a slow uploader does between its packets)."""
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=30,
                                    source_address=(source, 0) if source else None)
    lines = ["POST /v2/job HTTP/1.1", "Host: x", "Accept: application/json",
             f"Content-Type: multipart/form-data; boundary={BOUNDARY}",
             f"Content-Length: {size}"] + ([f"Authorization: Bearer {token}"] if token else [])
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + f"--{BOUNDARY}\r\n".encode())
    return sock


def noise_png(megabytes: float) -> bytes:
    """A PNG of noise (it does not compress) of about `megabytes` MB."""
    side = int((megabytes * MB / 3) ** 0.5)
    buffer = io.BytesIO()
    Image.frombytes("RGB", (side, side), os.urandom(side * side * 3)).save(
        buffer, "PNG", compress_level=1)
    return buffer.getvalue()


def refused_or_held(live, sock: socket.socket, held_before: int, size: int) -> int:
    """The status a stalled upload got (429), or 0 once the server holds its bytes."""
    uploads = live.kontext.uploads
    while uploads.in_flight != held_before + size:
        if select.select([sock], [], [], 0.02)[0]:  # an answer came instead
            return read_answer(sock).status
    return 0


def test_slow_uploads_fill_their_senders_share_of_the_upload_memory_only(serve):
    live = serve(tokens=[ABUSER, VICTIM], **PATIENT)
    uploads = live.kontext.uploads
    with contextlib.ExitStack() as held:
        outcomes = []
        for _ in range(6):  # the attack: six 11 MB bodies at a crawl
            before = uploads.in_flight
            sock = held.enter_context(stalled_upload(live.url, 11 * MB, ABUSER))
            outcomes.append(refused_or_held(live, sock, before, 11 * MB))
        # 32 MiB is its share of 64 MiB: three bodies fit, the other three are refused.
        assert outcomes == [0, 0, 0, 429, 429, 429]
        # Everybody else still uploads, a 2 MB photo included.
        reply = post_job(live.url, CONFIG, noise_png(2), "application/json", token=VICTIM)
        assert reply.status_code == 200, reply.text


def test_an_address_holds_at_most_its_share_of_the_queue(serve):
    # Without tokens the address is the client: 127.0.0.2 floods, 127.0.0.1 is served.
    live = serve(**PATIENT)
    lane = live.kontext.jobs.engine_lane
    assert lane.capacity == 17 and lane.client_limit == 9
    with contextlib.ExitStack() as held:
        refusals = []
        for count in range(1, 18):  # the attack: seventeen slow 1 MB uploads
            sock = held.enter_context(stalled_upload(live.url, MB, source="127.0.0.2"))
            if count <= 9:
                wait_until(lambda n=count: lane.reserved == n, what="its place held")
            else:
                refusals.append(read_answer(sock))
        assert {answer.status for answer in refusals} == {429}
        assert b"client_share" in refusals[0].body
        reply = post_job(live.url, CONFIG, image_bytes(), "application/json")
        assert reply.status_code == 200, reply.text


def test_async_jobs_past_a_share_wait_without_holding_up_others(serve, tmp_path):
    engine = FakeEngine()
    engine.hold()
    live = serve(engine, results_dir=tmp_path, tokens=[ABUSER, VICTIM])
    flood = [submit(live.url, CONFIG, image_bytes(), token=ABUSER).json()["id"]
             for _ in range(12)]
    mine = submit(live.url, CONFIG, image_bytes(), token=VICTIM).json()["id"]
    # Nine of the abuser's jobs are in the queue (its share of 17 places); its other three
    # wait behind the victim's, which took a free place at once.
    position = get(live.url, mine, "job.json", VICTIM).json()["state"]["progress"]
    assert position["queue_position"] == 9
    assert get(live.url, flood[-1], "job.json", ABUSER).json()["state"]["progress"][
        "queue_position"] == 12
    engine.release()
    for job_id, token in [(mine, VICTIM)] + [(j, ABUSER) for j in flood]:
        wait_until(lambda j=job_id, t=token: get(live.url, j, "job.state.current", t).text
                   == "processed", what="every job done")


def test_retry_after_and_eta_count_the_steps_ahead(serve, tmp_path):
    # The case: a queue of one, 50-step jobs. 0.5 s a step on this engine.
    engine = FakeEngine(step_seconds=0.5)
    engine.hold()
    live = serve(engine, results_dir=tmp_path, queue_size=1, client_share=1)
    replies: list[httpx2.Response] = []
    steps = [50, 20]
    threads = [threading.Thread(target=lambda n=n: replies.append(post_job(
        live.url, {**CONFIG, "steps": n}, image_bytes(), "application/json")))
        for n in steps]
    threads[0].start()
    wait_until(lambda: live.kontext.engines.busy_count == 1, what="the first job running")
    threads[1].start()
    wait_until(lambda: live.kontext.jobs.waiting == 1, what="the second job queued")
    refused = post_job(live.url, {**CONFIG, "steps": 50}, image_bytes(), "application/json")
    assert refused.status_code == 429
    # The running job's 50 steps (it is held before its first) and the queued job's 20.
    assert refused.headers["retry-after"] == str(int(50 * 0.5 + 20 * 0.5))
    # An async job waits in line: it starts after that work, then runs its own 4 steps.
    waiting = submit(live.url, {**CONFIG, "steps": 4}, image_bytes()).json()["id"]
    progress = get(live.url, waiting, "job.json").json()["state"]["progress"]
    assert progress["queue_position"] == 2
    assert progress["eta_seconds"] == 35 + 4 * 0.5
    engine.step_seconds = 0  # estimates checked: no need to spend them
    engine.release()
    for thread in threads:
        thread.join()
    assert sorted(reply.status_code for reply in replies) == [200, 200]
    wait_until(lambda: get(live.url, waiting, "job.state.current").text == "processed",
               what="the async job done")


@pytest.mark.parametrize("share", [0, 1.5])
def test_client_share_is_a_fraction(share):
    from pydantic import ValidationError

    from server.settings import Settings

    with pytest.raises(ValidationError, match="client_share"):
        Settings(client_share=share)
