"""The bad-input catalogue: every hostile or malformed request against one real server.

Each row sends one request and asserts its status AND that the message names the field or
limit at fault. The rows share one server (fake engine) so the last tests can show that
after all of them it still serves good jobs, on the fake and on the real tiny engine.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import time
from dataclasses import dataclass, field, replace
from typing import Any

import httpx2
import pytest
from helpers.bad_files import (
    CountingBody,
    animated_webp,
    cmyk_jpeg,
    png_16bit,
    png_claiming_size,
    truncated_png,
)
from helpers.fake_engine import FakeEngine
from helpers.http import DEV, image_of, input_part, job_part
from helpers.images import gradient_png, image_bytes
from helpers.live_server import LiveServer, start_server
from helpers.servers import make_settings

from server.api.app import create_app

PNG = gradient_png(640, 480)
GOOD = {"prompt": "make it red", "width": 512, "height": 512, "steps": 2, "seed": 3}
MB = 1024 * 1024
TOKEN = "catalogue-secret-token"


@dataclass
class Req:
    """One request: a JSON/raw body, or multipart parts; extra headers and query."""

    content: bytes | None = None
    content_type: str | None = "application/json"
    files: list[tuple] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)

    def send(self, url: str) -> httpx2.Response:
        headers = dict(self.headers)
        if self.files is not None:
            return httpx2.post(f"{url}/v2/job", files=self.files, headers=headers,
                              params=self.params, timeout=60)
        if self.content_type:
            headers["Content-Type"] = self.content_type
        return httpx2.post(f"{url}/v2/job", content=self.content, headers=headers,
                          params=self.params, timeout=60)


def body(value: Any) -> Req:
    """A JSON body (not multipart) holding `value`."""
    return Req(json.dumps(value).encode())


def job(config: dict[str, Any] | None = None, image: bytes = PNG, name: str = "in.png",
        mime: str = "image/png", job_type: str = DEV, **headers: str) -> Req:
    """A multipart job with one input, input first as the JS client sends it."""
    config = {**GOOD, **(config or {})}
    return Req(files=[input_part(image, name, mime), job_part(config, job_type)],
               headers=headers)


def raw_job(job_text: str | bytes, image: bytes = PNG) -> Req:
    """A multipart job whose `job` part is exactly `job_text`."""
    return Req(files=[input_part(image), ("job", ("job.json", job_text, "application/json"))])


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


# (id, request, status, pattern the error message must match)
CASES: list[tuple[str, Req, int, str]] = [
    # --- the body itself ---
    ("empty-body", Req(b""), 400, r"^body: request body is empty"),
    ("not-json", Req(b"{nope"), 400, r"^body: is not valid JSON"),
    ("json-array", body([1, 2]), 400, r"^body: must be a JSON object .* got list"),
    ("json-string", body("hello"), 400, r"^body: must be a JSON object .* got str"),
    ("deep-nesting-100k", Req(b"[" * 100_000 + b"]" * 100_000), 400,
     r"^body: .*nest.*\b32\b"),
    ("deep-nesting-in-config", body({"type": DEV, "config": {"prompt": "abc",
                                                             "x": nested(40)}}), 400,
     r"^body: .*nest.*\b32\b"),
    ("nan-is-not-json", Req(b'{"type": "%s", "config": {"guidance_scale": NaN}}'
                            % DEV.encode()), 400, r"^body: is not valid JSON: NaN"),
    ("invalid-utf8", Req(b'{"type": "\xff\xfe"}'), 400, r"^body: is not valid JSON"),
    ("text-plain", Req(b"make it red", "text/plain"), 415,
     r"^Content-Type: must be application/json or multipart/form-data, got 'text/plain'"),
    ("unknown-job-type", body({"type": "inference.nope.v9", "config": {}}), 400,
     rf"^type: unknown job type 'inference.nope.v9'; this server supports: .*{re.escape(DEV)}"),
    ("type-not-string", body({"type": 5, "config": {}}), 400, r"^type: must be a string, got 5"),
    ("unknown-top-level-field", body({"type": DEV, "config": {}, "extra": 1}), 400,
     r"^extra: unknown field"),
    ("json-without-input", body({"type": DEV, "config": GOOD}), 400,
     r"^input: .* needs 1 input image, got none"),
    ("price-not-a-boolean", Req(json.dumps({"type": DEV, "config": GOOD}).encode(),
                                params={"price": "maybe"}), 400, r"^price: .*boolean.*'maybe'"),
    # --- multipart structure ---
    ("missing-job-part", Req(files=[input_part(PNG)]), 400,
     r"^job: expected exactly one `job` part, got 0"),
    ("two-job-parts", Req(files=[input_part(PNG), job_part(GOOD), job_part(GOOD)]), 400,
     r"^job: expected exactly one `job` part, got 2"),
    ("multipart-without-boundary", Req(b"garbage", "multipart/form-data"), 400,
     r"^body: malformed multipart body: .*boundary"),
    ("multipart-garbage", Req(b"garbage", "multipart/form-data; boundary=xyz"), 400,
     r"^body: malformed multipart body"),
    ("too-many-inputs", Req(files=[*(input_part(image_bytes(300, 300 + i)) for i in range(6)),
                                   job_part(GOOD)]), 400, r"(?i)(input|files).*\d"),
    ("job-part-not-json", raw_job("{nope"), 400, r"^job: is not valid JSON"),
    ("job-part-array", raw_job("[]"), 400, r"^job: must be a JSON object .* got list"),
    # --- config fields: types ---
    ("config-not-object", raw_job(json.dumps({"type": DEV, "config": [1]})), 400,
     r"^config: must be an object"),
    ("width-as-string", job({"width": "512"}), 400,
     r"^config.width: must be an integer, got '512'"),
    ("steps-as-boolean", job({"steps": True}), 400, r"^config.steps: must be an integer, got true"),
    ("prompt-as-number", job({"prompt": 42}), 400, r"^config.prompt: must be a string, got 42"),
    ("seed-as-float", job({"seed": 1.5}), 400, r"^config.seed: must be an integer, got 1.5"),
    ("unknown-config-field", job({"strength": 0.5}), 400, r"^config.strength: unknown field"),
    ("unknown-style-preset", job({"style_preset": "vaporwave"}), 400,
     r"^config.style_preset: must be one of .*'anime'.*got 'vaporwave'"),
    # --- config fields: ranges and boundaries (511/1041 also break the multiple-of-16 rule,
    # which is the first rule they fail and the one the server names) ---
    ("width-511", job({"width": 511}), 400, r"^config.width: must be a multiple of 16, got 511"),
    ("width-1041", job({"width": 1041}), 400,
     r"^config.width: must be a multiple of 16, got 1041"),
    ("width-520", job({"width": 520}), 400, r"^config.width: must be a multiple of 16, got 520"),
    ("width-480", job({"width": 480}), 400, r"^config.width: must be at least 512, got 480"),
    ("height-1056", job({"height": 1056}), 400,
     r"^config.height: must be at most 1040, got 1056"),
    ("width-1000", job({"width": 1000}), 400, r"^config.width: must be a multiple of 16, got 1000"),
    ("steps-0", job({"steps": 0}), 400, r"^config.steps: must be at least 1, got 0"),
    ("steps-51", job({"steps": 51}), 400, r"^config.steps: must be at most 50, got 51"),
    ("prompt-2-chars", job({"prompt": "ab"}), 400,
     r"^config.prompt: must be at least 3 characters, got 2"),
    ("prompt-4097-chars", job({"prompt": "a" * 4097}), 400,
     r"^config.prompt: must be at most 4096 characters, got 4097"),
    ("prompt-missing", raw_job(json.dumps({"type": DEV, "config": {"steps": 2}})), 400,
     r"^config.prompt: is required"),
    ("guidance-11", job({"guidance_scale": 11}), 400,
     r"^config.guidance_scale: must be at most 10, got 11"),
    ("seed-negative", job({"seed": -1}), 400, r"^config.seed: must be at least 0, got -1"),
    ("seed-2^64", job({"seed": 2**64}), 400, r"^config.seed: must be at most 9223372036854775807"),
    # --- input images ---
    ("truncated-png", job(image=truncated_png()), 400,
     r"^input: could not be decoded \(truncated or corrupt"),
    ("random-bytes-as-jpg", job(image=os.urandom(4096), name="photo.jpg", mime="image/jpeg"),
     400, r"^input: is not a readable PNG, JPEG or WebP image"),
    ("zero-byte-file", job(image=b""), 400, r"^input: is an empty file"),
    # Refused from the header alone: decoding would have failed as truncated instead.
    ("20000x20000-header", job(image=png_claiming_size(20_000, 20_000)), 400,
     r"^input: .*(pixels|20000x20000)"),
    ("4000x4000-header", job(image=png_claiming_size(4000, 4000)), 400,
     r"^input: (is 4000x4000; each side must be at most 1920 px|.*16000000 pixels)"),
    ("animated-webp", job(image=animated_webp(), name="a.webp", mime="image/webp"), 400,
     r"^input: is animated \(3 frames\)"),
    ("gif", job(image=image_bytes(300, 300, "GIF"), name="a.gif", mime="image/gif"), 400,
     r"^input: is GIF; only PNG, JPEG and WebP are accepted"),
    ("image-under-256px", job(image=image_bytes(200, 300)), 400,
     r"^input: is 200x300; each side must be at least 256 px"),
    ("image-over-1920px", job(image=image_bytes(1921, 300)), 400,
     r"^input: is 1921x300; each side must be at most 1920 px"),
    ("12MB-file", job(image=os.urandom(12_000_000)), 400, r"^input: is 11.4 MB, over the 10 MB"),
    # --- headers ---
    ("accept-8KB", job(accept=", ".join(["image/png"] * 800)), 406, r"^Accept: .*4096"),
    # uvicorn's httptools parser sets no header size limit, so the app's own one answers.
    ("accept-64KB", job(accept=",".join(["image/png"] * 6500)), 406, r"^Accept: .*4096"),
    ("accept-unproducible", job(accept="text/html"), 406, r"^Accept: none of 'text/html'"),
]


#: The rows replayed against the real engine: those that reach the image decoder.
REAL_ENGINE_CASES = {"empty-body", "not-json", "truncated-png", "random-bytes-as-jpg",
                     "zero-byte-file", "20000x20000-header", "animated-webp", "12MB-file",
                     "image-under-256px", "accept-8KB"}


@pytest.fixture(scope="module")
def live() -> LiveServer:
    """One server for the whole catalogue (module scope: the last test needs its history)."""
    server = start_server(create_app(make_settings(), FakeEngine()))
    yield server
    server.stop()


def error_of(reply: httpx2.Response) -> str:
    """The failed job's `error` (the catalogue asks for JSON, so errors are JSON)."""
    assert reply.headers["content-type"].startswith("application/json"), reply.headers
    job_json = reply.json()
    assert job_json["state"]["current"] == "failed"
    return job_json["error"]


@pytest.mark.parametrize(("request_", "status", "pattern"),
                         [pytest.param(r, s, p, id=i) for i, r, s, p in CASES])
def test_bad_input_is_refused_clearly(live, request_: Req, status: int, pattern: str):
    reply = request_.send(live.url)
    assert reply.status_code == status, reply.text[:500]
    assert re.search(pattern, error_of(reply)), error_of(reply)


@pytest.mark.parametrize(("body_", "declare_length"), [
    pytest.param(CountingBody(100 * MB), True, id="content-length"),
    pytest.param(CountingBody(100 * MB), False, id="chunked"),
])
def test_100MB_body_is_refused_early(live, body_: CountingBody, declare_length: bool):
    headers = {"Content-Type": "application/json"}
    if declare_length:
        headers["Content-Length"] = str(body_.total)
    reply = httpx2.post(f"{live.url}/v2/job", content=iter(body_), headers=headers, timeout=60)
    assert reply.status_code == 413, reply.text[:300]
    limit = live.kontext.settings.max_body_bytes
    expected = rf"{body_.total} bytes, over the {limit}-byte limit" if declare_length \
        else rf"over the {limit}-byte limit"
    assert re.search(expected, error_of(reply)), error_of(reply)
    # Refused while the client was still sending: it never had to send all 100 MB.
    assert body_.sent < body_.total


def test_aborted_upload_is_logged_as_the_clients_doing(live, caplog):
    """A client that hangs up mid-body is a 499 at INFO, not a 500 with a traceback."""
    caplog.set_level(logging.INFO)
    host, port = live.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(b"POST /v2/job HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                     b"\r\nContent-Length: 1000\r\n\r\n{\"type\": ")
    deadline = time.monotonic() + 10
    while not any("499" in r.getMessage() for r in caplog.records):
        assert time.monotonic() < deadline, "the server never noticed the hang-up"
        time.sleep(0.05)
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    # The 9 bytes sent count once read; uvicorn reports the hang-up instead of a body it
    # still holds when the hang-up came first (a loaded machine): then 0 were read.
    said = re.compile(r"the client disconnected after sending (9|0) bytes")
    assert any(said.search(r.getMessage()) for r in caplog.records)


@pytest.mark.parametrize(("request_", "size"), [
    pytest.param(job(image=png_16bit()), (512, 512), id="16-bit-png"),
    pytest.param(job(image=cmyk_jpeg(), name="print.jpg", mime="image/jpeg"), (512, 512),
                 id="cmyk-jpeg"),
    pytest.param(job({"width": 512, "height": 1024, "steps": 1, "prompt": "abc"}), (512, 1024),
                 id="lower-bounds-512-steps-1-prompt-3"),
    pytest.param(job({"width": 1024, "height": 512, "steps": 50, "prompt": "a" * 4096}),
                 (1024, 512), id="upper-bounds-1024-steps-50-prompt-4096"),
    pytest.param(job(image=image_bytes(256, 1920)), (512, 512), id="image-256x1920"),
    pytest.param(job(image=image_bytes(300, 300, "WEBP"), name="a.webp", mime="image/webp"),
                 (512, 512), id="still-webp"),
])
def test_odd_but_valid_input_is_accepted(live, request_: Req, size: tuple[int, int]):
    reply = replace(request_, headers={**request_.headers, "Accept": "image/png"}).send(live.url)
    assert reply.status_code == 200, reply.text[:500]
    assert image_of(reply.content).size == size


@pytest.fixture(scope="module")
def live_with_token() -> LiveServer:
    server = start_server(create_app(make_settings(tokens=[TOKEN, "second-token-3c4d5e6f"]),
                                     FakeEngine()))
    yield server
    server.stop()


@pytest.mark.parametrize("authorization", [
    pytest.param(None, id="no-token"),
    pytest.param(f"Bearer {TOKEN}x", id="wrong-token"),
    pytest.param("Bearer", id="empty-token"),
    pytest.param(f"Basic {TOKEN}", id="wrong-scheme"),
    pytest.param(TOKEN, id="token-without-scheme"),
])
def test_missing_or_wrong_token_is_401_plain_text(live_with_token, authorization: str | None):
    headers = {"Authorization": authorization} if authorization else {}
    request_ = job(**headers)
    reply = request_.send(live_with_token.url)
    assert reply.status_code == 401
    assert reply.headers["content-type"].startswith("text/plain")
    assert "token is invalid" in reply.text
    assert TOKEN not in reply.text


@pytest.mark.parametrize("path", ["/v2/job", "/v2/job/async"])
def test_100MB_body_without_token_is_refused_unread(live_with_token, path: str):
    body_ = CountingBody(100 * MB)
    reply = httpx2.post(f"{live_with_token.url}{path}", content=iter(body_), timeout=60,
                       headers={"Content-Type": "application/json"})
    assert reply.status_code == 401
    assert "token is invalid" in reply.text
    assert body_.sent < body_.total


def test_right_token_is_served(live_with_token):
    reply = job(Authorization=f"Bearer {TOKEN}", Accept="application/json").send(
        live_with_token.url)
    assert reply.status_code == 200, reply.text
    assert reply.json()["state"]["current"] == "completed"


def test_after_the_catalogue_the_server_still_serves_a_good_job(live):
    engine: FakeEngine = live.kontext.engines.workers[0].engine
    ran_before = len(engine.requests)
    reply = job(Accept="image/png").send(live.url)
    assert reply.status_code == 200, reply.text
    assert image_of(reply.content).size == (512, 512)
    assert len(engine.requests) == ran_before + 1
    ready = httpx2.get(f"{live.url}/readyz").json()
    assert ready["ready"] is True and ready["queue"]["waiting"] == 0


def test_real_tiny_engine_serves_a_good_job_after_bad_ones(serve, tiny_engine):
    """The same abuse, then a good job, against the real FluxKontextPipeline."""
    live_real = serve(engine=tiny_engine)
    for case_id, request_, status, _pattern in CASES:
        if case_id in REAL_ENGINE_CASES:
            assert request_.send(live_real.url).status_code == status, case_id
    reply = job({"steps": 1}, Accept="image/png").send(live_real.url)
    assert reply.status_code == 200, reply.text
    assert image_of(reply.content).size == (512, 512)
