"""Limits at the HTTP edge, before any application code: header size, header time, body
rate, the connection cap. Each is proven by events on a bare socket: an answer arriving for
a request that was never complete, a connection the server closed."""

from __future__ import annotations

import select
import threading

import httpx2
from helpers.http import post_job
from helpers.images import image_bytes
from helpers.raw_http import connect, read_answer, send_quietly

CONFIG = {"prompt": "make it green", "width": 512, "height": 512, "steps": 1}
MIB = 1024 * 1024


def big_header_request(url: str, size: int) -> tuple[int, bool]:
    """Send a request line and a `size`-byte header, never ending the headers; the status
    of the answer and whether the server closed the connection."""
    with connect(url) as sock:
        send_quietly(sock, b"POST /v2/job HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * size)
        answer = read_answer(sock, until_closed=True)
        return answer.status, answer.closed


def test_a_1_mib_header_is_refused_431_before_it_ends_and_healthz_answers_meanwhile(serve):
    live = serve()
    results: list[tuple[int, bool]] = []
    senders = [threading.Thread(target=lambda: results.append(big_header_request(live.url, MIB)))
               for _ in range(4)]
    for sender in senders:
        sender.start()
    probes = [httpx2.get(f"{live.url}/healthz", timeout=10).status_code for _ in range(3)]
    for sender in senders:
        sender.join(timeout=30)
    assert probes == [200, 200, 200]
    # The headers never ended, so only a size limit can have answered them.
    assert results == [(431, True)] * 4


def test_a_slowloris_is_closed_by_the_header_timeout_while_a_good_job_succeeds(serve):
    live = serve(header_timeout_seconds=1.0)
    slow = [connect(live.url) for _ in range(50)]
    for sock in slow:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    good = post_job(live.url, CONFIG, image_bytes(), accept="image/png")
    assert good.status_code == 200, good.text
    answers = []
    rounds = 0
    while slow and rounds < 300:  # each round drips one more byte; the server must cut them
        rounds += 1
        readable, _, _ = select.select(slow, [], [], 0.1)
        for sock in readable:
            answers.append(read_answer(sock, until_closed=True))
            slow.remove(sock)
            sock.close()
        for sock in slow:
            send_quietly(sock, b"a")
    assert not slow, f"{len(slow)} slow connections still open"
    assert {(a.status, a.closed) for a in answers} == {(408, True)}
    assert b"header_timeout_seconds" in answers[0].body


def test_a_body_slower_than_the_minimum_rate_is_answered_408(serve):
    live = serve(body_timeout_seconds=0.5, min_body_rate=1_000_000)
    with connect(live.url) as sock:
        sock.sendall(b"POST /v2/job HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100000\r\n\r\n{\"type\": ")
        answer = read_answer(sock, until_closed=True)
    # Answered though the body never came: the rate limit, not the end of the body.
    assert (answer.status, answer.closed) == (408, True)
    assert b"min_body_rate" in answer.body
    assert httpx2.get(f"{live.url}/healthz").status_code == 200


def test_the_connection_cap_answers_503_rather_than_dropping(serve):
    live = serve(max_connections=8, header_timeout_seconds=60)
    idle = [connect(live.url) for _ in range(8)]
    refused = None
    for _ in range(4):  # a probe connection of wait_ready may still be closing: try again
        with connect(live.url) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = read_answer(sock, until_closed=True)
        if answer.status == 503:
            refused = answer
            break
    assert refused is not None, "no connection over the cap was refused"
    assert refused.closed and refused.headers["retry-after"] == "1"
    assert b"max_connections" in refused.body
    for sock in idle:
        sock.close()
