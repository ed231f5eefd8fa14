"""[pro]/[max] jobs forwarded straight to BFL's API: a real HTTPS fake on loopback.

The fake answers on `localhost` (base and polling host) and `127.0.0.1` (the result host):
two host names for one loopback server, so the tests can see which host got the key.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import socket
import struct
import time
import zlib

import httpx2
import pytest
from helpers.fake_upstream import (
    Truncated,
    hang,
    image_file,
    pending,
    reply,
    status,
)
from helpers.http import (
    MAX_IMG,
    MAX_TXT,
    PRO_IMG,
    PRO_TXT,
    image_of,
    job_of,
    multipart_parts,
    post_job,
)
from helpers.images import gradient_png
from pydantic import ValidationError
from starlette.responses import Response, StreamingResponse

from server.settings import Settings

BFL_KEY = "bfl-key-0c4f7a19e2"
CLIENT_TOKEN = "client-token-8812"


@pytest.fixture
def bfl(serve, fake, monkeypatch):
    """Factory: our server forwarding to the fake BFL with the server's key."""
    fake.reset()
    monkeypatch.setenv("TEST_BFL_KEY", BFL_KEY)

    def start(**settings):
        settings = {"upstream": "bfl", "bfl_url": fake.url("localhost"),
                    "bfl_key_env": "TEST_BFL_KEY", "upstream_ca_file": fake.ca_file,
                    "upstream_hosts": [f"localhost:{fake.port}", f"127.0.0.1:{fake.port}"],
                    "tokens": [CLIENT_TOKEN],
                    "upstream_poll_interval": 0.02, "upstream_retry_budget": 0, **settings}
        return serve(**settings)
    return start


def send(live, job_type=PRO_IMG, config=None, image=b"default",
         accept="multipart/form-data; image/png", params=None):
    image = gradient_png(640, 480) if image == b"default" else image
    return post_job(live.url, config or {"prompt": "make it blue"}, image, accept=accept,
                    job_type=job_type, token=CLIENT_TOKEN, params=params)


def test_img2img_submit_poll_download(bfl, fake):
    image = gradient_png(640, 480)
    answer = send(bfl(), image=image, config={"prompt": "make it blue", "seed": 11},
                  params={"price": "true"})
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-kontext-served-by"] == "upstream-bfl"
    parts = multipart_parts(answer)
    job = json.loads(parts["job"][1])
    assert job["served_by"] == {"backend": "upstream-bfl", "host": "localhost",
                                "polling_host": "localhost", "job_id": "bfl-task-1"}
    assert job["price"] == {"product": PRO_IMG, "dollars": 0.04}
    assert image_of(parts["output"][1]).format == "PNG"
    (submit,) = fake.requests("submit")
    assert submit.path == "/v1/flux-kontext-pro" and submit.host == "localhost"
    assert json.loads(submit.body) == {
        "prompt": "make it blue", "seed": 11, "prompt_upsampling": False,
        "safety_tolerance": 2, "output_format": "png",
        "input_image": base64.b64encode(image).decode()}
    (poll,) = fake.requests("poll")
    assert poll.query == "id=bfl-task-1"  # the polling_url, unchanged
    (sample,) = fake.requests("sample")
    assert sample.host == "127.0.0.1"
    # The key went to the base and polling host only, never to the result host.
    assert submit.headers["x-key"] == BFL_KEY and poll.headers["x-key"] == BFL_KEY
    assert "x-key" not in sample.headers
    for seen in fake.seen:
        assert CLIENT_TOKEN not in seen.body.decode("latin-1") + json.dumps(seen.headers)


@pytest.mark.parametrize("job_type", [PRO_TXT, PRO_IMG, MAX_TXT, MAX_IMG])
def test_every_pro_max_type_is_forwarded(bfl, fake, job_type):
    image = b"default" if job_type.endswith("img2img.v2") else None
    answer = send(bfl(), job_type, image=image, accept="application/json")
    assert answer.status_code == 200, answer.text
    model = job_type.split(".")[2]
    (submit,) = fake.requests("submit")
    assert submit.path == f"/v1/flux-kontext-{model}"
    assert ("input_image" in json.loads(submit.body)) == (image is not None)


def test_max_txt2img_after_pending_polls(bfl, fake):
    fake.then("poll", pending, pending, pending)
    answer = send(bfl(), MAX_TXT, {"prompt": "a red fox", "aspect_ratio": "21:9"}, image=None,
                  accept="image/jpeg")
    assert answer.status_code == 200, answer.text
    assert image_of(answer.content).format == "JPEG"
    body = json.loads(fake.requests("submit")[0].body)
    assert fake.requests("submit")[0].path == "/v1/flux-kontext-max"
    assert body["aspect_ratio"] == "21:9" and body["safety_tolerance"] == 4
    assert "input_image" not in body and body["output_format"] == "jpeg"
    assert len(fake.requests("poll")) == 4


@pytest.mark.parametrize(("name", "code"), [("Request Moderated", 400),
                                           ("Content Moderated", 403)])
def test_moderation_names_the_status(bfl, fake, name, code):
    # The request refused: 400; the output refused: 403 (as our own filter answers).
    fake.then("poll", status(name, details={"reason": "flagged"}))
    answer = send(bfl(), accept="application/json")
    assert answer.status_code == code
    assert name in answer.json()["error"] and "flagged" in answer.json()["error"]
    assert fake.requests("sample") == []


@pytest.mark.parametrize("name", ["Error", "Task not found"])
def test_upstream_error_status_is_502(bfl, fake, name):
    fake.then("poll", status(name))
    answer = send(bfl(), accept="application/json")
    assert answer.status_code == 502
    assert f"reported {name!r}" in answer.json()["error"]


@pytest.mark.parametrize(("handler", "code", "words"), [
    (reply(402, {"detail": "Insufficient credits"}), 502, "upstream account has no credits"),
    (reply(422, {"detail": [{"loc": ["body", "prompt"], "msg": "bad prompt"}]}), 422,
     "bad prompt"),
    (reply(500, "boom"), 502, "answered 500: boom"),
    (reply(200, {"id": "no-polling-url"}), 502, "no id and polling_url"),
    (reply(403, f"key {BFL_KEY} is not valid"), 502, "refused the server's API key"),
], ids=["402", "422", "500", "no-polling-url", "403"])
def test_submit_failures(bfl, fake, handler, code, words):
    fake.then("submit", handler)
    answer = send(bfl(), accept="application/json")
    assert answer.status_code == code, answer.text
    assert words in answer.json()["error"]
    assert BFL_KEY not in answer.text
    assert fake.requests("poll") == []


def test_concurrency_limit_is_429_with_retry_after(bfl, fake):
    fake.then("submit", reply(429, {"detail": "too many tasks"}, {"Retry-After": "4"}))
    answer = send(bfl(), accept="multipart/form-data")
    assert answer.status_code == 429
    assert answer.headers["retry-after"] == "4"
    assert job_of(answer)["state"]["current"] == "failed"


def test_poll_429_waits_and_goes_on(bfl, fake):
    fake.then("poll", reply(429, "", {"Retry-After": "1"}))
    answer = send(bfl(), accept="application/json")
    assert answer.status_code == 200, answer.text
    assert len(fake.requests("poll")) == 2


@pytest.mark.parametrize(("sample", "words"), [
    ("https://files.example.invalid/out.png", "outside the allowed origins"),
    ("http://127.0.0.1:{port}/sample/out.png", "on http://127.0.0.1:{port}, outside"),
    ("not a url", "not a URL"),
], ids=["other-host", "plain-http", "garbage"])
def test_result_url_must_be_https_on_allowed_hosts(bfl, fake, sample, words):
    fake.then("poll", status("Ready", result={"sample": sample.format(port=fake.port)}))
    answer = send(bfl(), accept="application/json")
    assert answer.status_code == 502
    assert words.format(port=fake.port) in answer.json()["error"]
    assert fake.requests("sample") == []


def test_default_hosts_refuse_a_result_off_bfl_ai(bfl, fake):
    # Default upstream_hosts is bfl.ai (+ the base URL's origin): 127.0.0.1 is outside it.
    live = bfl(upstream_hosts="bfl.ai")
    answer = send(live, accept="application/json")
    assert answer.status_code == 502
    assert (f"https://127.0.0.1:{fake.port}, outside the allowed origins (https://bfl.ai:443, "
            f"https://localhost:{fake.port})") in answer.json()["error"]
    assert fake.requests("sample") == []


def test_polling_url_elsewhere_is_refused_before_any_key_is_sent(bfl, fake):
    fake.then("submit", reply(200, {"id": "t", "polling_url": "https://poll.example.invalid/"}))
    answer = send(bfl(), accept="application/json")
    assert answer.status_code == 502
    assert "polling_url on https://poll.example.invalid:443" in answer.json()["error"]


def test_result_redirect_to_another_host_is_refused(bfl, fake):
    fake.then("sample", reply(302, "", {"Location": "https://cdn.example.invalid/x.png"}))
    answer = send(bfl(), accept="application/json")
    assert answer.status_code == 502
    assert "result redirect on https://cdn.example.invalid:443" in answer.json()["error"]


def test_oversized_result_is_refused(bfl, fake):
    # Chunked, so no Content-Length warns ahead: the cap stops the reading.
    fake.then("sample", lambda seen, fake: StreamingResponse(iter([b"x" * 1000] * 5)))
    answer = send(bfl(upstream_max_bytes=2048), accept="application/json")
    assert answer.status_code == 502
    assert "more than the 2048-byte limit" in answer.json()["error"]


def test_a_poll_that_hangs_is_polled_again(bfl, fake):
    fake.then("poll", hang(3))
    answer = send(bfl(upstream_timeout=0.5), accept="application/json")
    assert answer.status_code == 200, answer.text
    assert len(fake.requests("poll")) == 2


def test_polls_that_hang_until_the_job_time_limit_are_504(bfl, fake):
    fake.then("poll", *[hang(3)] * 10)
    answer = send(bfl(upstream_timeout=0.5, upstream_job_timeout=1.5),
                  accept="application/json")
    assert answer.status_code == 504


def test_pending_past_the_job_timeout_is_504(bfl, fake):
    fake.then("poll", *[pending] * 200)
    answer = send(bfl(upstream_job_timeout=1), accept="application/json")
    assert answer.status_code == 504
    assert "longer than 1 s" in answer.json()["error"]


def test_key_never_logged_or_answered(bfl, fake, caplog):
    caplog.set_level(logging.DEBUG)
    fake.then("poll", status("Error", details={"echo": f"x-key: {BFL_KEY}"}))
    live = bfl()
    failed, ok = send(live, accept="application/json"), send(live)
    assert failed.status_code == 502 and ok.status_code == 200
    assert BFL_KEY not in failed.text + ok.text
    assert "[redacted]" in failed.json()["error"]
    assert BFL_KEY not in caplog.text and "reported 'Error'" in caplog.text
    assert os.environ["TEST_BFL_KEY"] == BFL_KEY  # the key was really configured


@pytest.mark.parametrize(("route", "handler", "words"), [
    ("sample", lambda seen, fake: Truncated(image_file("png")[:40], "image/png"),
     "RemoteProtocolError"),
    ("sample", reply(200, "not an image"), "cannot be read"),
    ("poll", reply(200, "<html>gateway</html>"), "polling answered 200 with status 'None'"),
], ids=["truncated-sample", "bad-sample", "malformed-poll"])
def test_broken_answers_are_502(bfl, fake, route, handler, words):
    fake.then(route, handler)
    answer = send(bfl(), accept="application/json")
    assert answer.status_code == 502, answer.text
    assert words in answer.json()["error"]


def test_async_variant_forwards_too(bfl, fake):
    live = bfl()
    created = httpx2.post(f"{live.v2}/job/async", json={"type": MAX_TXT, "config": {
        "prompt": "a red fox"}}, headers={"Authorization": f"Bearer {CLIENT_TOKEN}",
                                           "Accept": "image/png"})
    assert created.status_code == 201, created.text
    job_url = f"{live.v2}/job/async/{created.json()['id']}"
    headers = {"Authorization": f"Bearer {CLIENT_TOKEN}"}
    deadline = time.monotonic() + 20
    state = "processing"
    while state == "processing" and time.monotonic() < deadline:
        time.sleep(0.05)
        state = httpx2.get(f"{job_url}/job.state.current", headers=headers).text.strip()
    assert state == "processed"
    job = httpx2.get(f"{job_url}/job.json", headers=headers).json()
    assert job["served_by"]["backend"] == "upstream-bfl"
    assert fake.requests("submit")[0].headers["x-key"] == BFL_KEY


def png_bomb(side: int = 40_000) -> bytes:
    """A PNG whose header claims side × side pixels (a decompression bomb), nothing more."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


def test_a_polling_url_on_another_port_is_refused_and_receives_nothing(bfl, fake):
    with socket.socket() as other:  # a listener on the allowed host, on another port
        other.bind(("127.0.0.1", 0))
        other.listen()
        other.setblocking(False)
        port = other.getsockname()[1]
        polling = f"https://localhost:{port}/v1/get_result?id=t"
        fake.then("submit", reply(200, {"id": "t", "polling_url": polling}))
        answer = send(bfl(), accept="application/json")
        assert answer.status_code == 502
        assert f"polling_url on https://localhost:{port}, outside the allowed origins" in \
            answer.json()["error"]
        with pytest.raises(BlockingIOError):
            other.accept()  # nobody ever connected: no key went there
    assert fake.requests("poll") == []


def test_an_upstream_decompression_bomb_is_502_naming_the_reason(bfl, fake):
    fake.then("sample", lambda seen, fake: Response(png_bomb(), media_type="image/png"))
    answer = send(bfl(), accept="application/json")
    assert answer.status_code == 502, answer.text
    error = answer.json()["error"]
    assert "result sent an image that cannot be read: image: has too many pixels" in error
    assert "too many pixels" in error


@pytest.mark.parametrize("upstream", ["bfl", "hosted"])
def test_plaintext_upstream_is_refused_unless_loopback_or_allowed(upstream):
    url_field = f"{upstream}_url"
    with pytest.raises(ValidationError, match="--upstream-allow-plaintext"):
        Settings(upstream=upstream, **{url_field: "http://api.example.org"})
    Settings(upstream=upstream, **{url_field: "http://127.0.0.1:9000"})  # loopback: tests
    allowed = Settings(upstream=upstream, upstream_allow_plaintext=True,
                       **{url_field: "http://api.example.org"})
    assert getattr(allowed, url_field) == "http://api.example.org"
    # The unused upstream's URL carries no credential: not refused.
    Settings(upstream="none", **{url_field: "http://api.example.org"})
