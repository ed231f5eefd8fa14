"""Admission before the body: a job that cannot be admitted is refused before its body is
read. Proven with `Expect: 100-continue` (the server asks for the body only when it reads
it, so a refusal that comes instead of `100 Continue` was made with the body unread) and,
without it, by answers that arrive while the client has sent a fraction of its body."""

from __future__ import annotations

import io
import json
import os
import threading
from dataclasses import dataclass

import httpx2
import pytest
from helpers.async_api import wait_until
from helpers.fake_engine import FakeEngine
from helpers.http import DEV, post_job
from helpers.images import image_bytes
from helpers.raw_http import connect, read_answer, send_quietly
from PIL import Image

CONFIG = {"prompt": "make it green", "width": 512, "height": 512, "steps": 1}
BOUNDARY = "edge16-upload"
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def upload() -> bytes:
    """A ~9 MiB multipart job: a PNG of noise (it does not compress) and the job part."""
    side = 1750  # 1750² RGB noise ≈ 9.2 MB of PNG
    noise = Image.frombytes("RGB", (side, side), os.urandom(side * side * 3))
    buffer = io.BytesIO()
    noise.save(buffer, "PNG", compress_level=1)
    job = json.dumps({"type": DEV, "config": CONFIG}).encode()
    return (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"input\"; "
            f"filename=\"noise.png\"\r\nContent-Type: image/png\r\n\r\n".encode()
            + buffer.getvalue()
            + f"\r\n--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"job\"\r\n\r\n"
            .encode() + job + f"\r\n--{BOUNDARY}--\r\n".encode())


def head(size: int, expect: bool, path: str = "/v2/job") -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: x", "Accept: application/json",
             f"Content-Type: multipart/form-data; boundary={BOUNDARY}",
             f"Content-Length: {size}"] + (["Expect: 100-continue"] if expect else [])
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@dataclass
class Upload:
    """How one upload went: the first answer, the final one, body bytes sent by then."""

    first: int
    final: int
    sent: int
    body: bytes = b""


def upload_with_expect(url: str, body: bytes, path: str = "/v2/job") -> Upload:
    """Headers with Expect: 100-continue; the body only if the server asks for it."""
    with connect(url, timeout=60) as sock:
        sock.sendall(head(len(body), expect=True, path=path))
        first = read_answer(sock)
        if first.status != 100:
            # Refused unread: the server closes, as the body it did not ask for never comes.
            assert first.closed or read_answer_closed(sock)
            return Upload(first.status, first.status, 0, first.body)
        sock.sendall(body)
        final = read_answer(sock)
        return Upload(100, final.status, len(body), final.body)


def read_answer_closed(sock) -> bool:
    """Whether the server closes the connection (after its answer, already read)."""
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def run_parallel(count: int, work) -> list:
    results: list = []
    threads = [threading.Thread(target=lambda: results.append(work())) for _ in range(count)]
    for thread in threads:
        thread.start()
    return threads, results


def test_40_uploads_against_a_queue_of_4_refuse_35_with_their_bodies_unsent(serve, upload):
    engine = FakeEngine()
    engine.hold()
    live = serve(engine, queue_size=4, client_share=1)  # one client: see test_client_fairness
    threads, results = run_parallel(40, lambda: upload_with_expect(live.url, upload))
    wait_until(lambda: sum(r.final == 429 for r in results) == 35, timeout=60,
               what="35 refusals")
    engine.release()
    for thread in threads:
        thread.join(timeout=60)
    refused = [r for r in results if r.final == 429]
    admitted = [r for r in results if r.final != 429]
    # 5 places (4 waiting + 1 running): 5 bodies asked for and run, 35 never asked for.
    assert [(r.first, r.final) for r in admitted] == [(100, 200)] * 5
    assert {(r.first, r.sent) for r in refused} == {(429, 0)}
    assert b"queue is full" in refused[0].body


def test_a_full_queue_answers_429_while_the_body_is_still_being_sent(serve, upload):
    engine = FakeEngine()
    engine.hold()
    live = serve(engine, queue_size=4, client_share=1)  # one client: see test_client_fairness
    small = image_bytes()
    fillers, _ = run_parallel(5, lambda: post_job(live.url, CONFIG, small))
    full = {"waiting": 4, "capacity": 4, "running": True}
    wait_until(lambda: httpx2.get(f"{live.url}/readyz").json()["queue"] == full,
               what="a full queue")

    def first_64k() -> Upload:
        with connect(live.url, timeout=60) as sock:
            sent = 64 * 1024
            send_quietly(sock, head(len(upload), expect=False) + upload[:sent])
            answer = read_answer(sock)  # the client sends nothing more until it is answered
            return Upload(answer.status, answer.status, sent, answer.body)

    threads, results = run_parallel(40, first_64k)
    for thread in threads:
        thread.join(timeout=60)
    engine.release()
    for thread in fillers:
        thread.join(timeout=60)
    assert len(results) == 40
    assert {(r.final, r.sent < len(upload)) for r in results} == {(429, True)}


def test_uploads_past_the_memory_budget_are_refused_before_their_bodies(serve, upload):
    live = serve(max_body_bytes_in_flight=len(upload) + 1)
    with connect(live.url, timeout=60) as first:
        first.sendall(head(len(upload), expect=True))
        assert read_answer(first).status == 100  # its body is being read now: budget used
        second = upload_with_expect(live.url, upload)
        assert (second.first, second.sent) == (429, 0)
        assert b"max_body_bytes_in_flight" in second.body
        first.sendall(upload)
        assert read_answer(first).status == 200
    # The budget is free again.
    assert upload_with_expect(live.url, upload).final == 200


def test_a_declared_body_over_the_limit_is_413_unread(serve, upload):
    live = serve(max_body_bytes=MIB)
    answer = upload_with_expect(live.url, upload)
    assert (answer.first, answer.sent) == (413, 0)
    assert b"over the 1048576-byte limit" in answer.body
