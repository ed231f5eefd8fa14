"""JSON that parses but cannot be represented: a number beyond a double's range (`1e400`,
either sign, in any numeric field) and a lone surrogate (`\\ud800`) in a string or a key.

Each is a 400 JSON answer naming the field, on /v2/job and /v2/job/async, as a JSON body
and as a multipart `job` part; every answer is counted in /metrics; and a 5xx escaping
from any route is counted too.
"""

from __future__ import annotations

import httpx2
import pytest
from helpers.fake_engine import FakeEngine
from helpers.http import DEV, input_part
from helpers.images import gradient_png
from helpers.live_server import LiveServer, start_server
from helpers.servers import make_settings
from test_observability import samples, value

from server.api.app import create_app

PNG = gradient_png(640, 480)
GOOD = '"prompt": "make it red", "width": 512, "height": 512, "steps": 1'

# (id, the config's JSON text with one bad value, the field the answer must name)
BAD = [
    ("huge-guidance", GOOD + ', "guidance_scale": 1e400', "config.guidance_scale"),
    ("huge-negative-seed", GOOD + ', "seed": -1e400', "config.seed"),
    ("huge-width", '"prompt": "make it red", "width": 1E+999', "config.width"),
    ("huge-lora-scale", GOOD + ', "loras": [{"name": "x", "scale": 1e400}]',
     "config.loras[0].scale"),
    ("huge-unknown-field", GOOD + ', "strength": -1e400', "config.strength"),
    ("surrogate-prompt", '"prompt": "make it \\ud800 red"', "config.prompt"),
    ("surrogate-key", GOOD + ', "\\udfff": 1', "config"),
    ("surrogate-deep", GOOD + ', "loras": [{"name": "\\ud83d"}]', "config.loras[0].name"),
]


@pytest.fixture(scope="module")
def live() -> LiveServer:
    server = start_server(create_app(make_settings(), FakeEngine()))
    yield server
    server.stop()


def send(url: str, path: str, form: str, config_text: str) -> httpx2.Response:
    job = f'{{"type": "{DEV}", "config": {{{config_text}}}}}'.encode()
    if form == "json":
        return httpx2.post(f"{url}{path}", content=job,
                          headers={"Content-Type": "application/json"}, timeout=30)
    files = [input_part(PNG), ("job", ("job.json", job, "application/json"))]
    return httpx2.post(f"{url}{path}", files=files, timeout=30)


@pytest.mark.parametrize("form", ["json", "multipart"])
@pytest.mark.parametrize("path", ["/v2/job", "/v2/job/async"])
@pytest.mark.parametrize(("config_text", "field"), [(c, f) for _, c, f in BAD],
                         ids=[case for case, _, _ in BAD])
def test_unrepresentable_values_are_400_naming_the_field(live, path, form, config_text, field):
    reply = send(live.url, path, form, config_text)
    assert reply.status_code == 400, reply.text
    assert reply.headers["content-type"] == "application/json"
    error = reply.json()["error"]
    assert error.startswith(f"{field}: "), error
    assert "beyond the range" in error or "lone surrogate" in error
    # The echo of what was sent is itself valid JSON: nothing unrepresentable in it.
    assert reply.json()["state"]["current"] == "failed"


def test_every_answer_is_counted(live):
    before = value(samples(live), "kontext_http_errors_total", status="400",
                   reason="invalid_request") or 0
    for _, config_text, _ in BAD:
        assert send(live.url, "/v2/job", "json", config_text).status_code == 400
    after = value(samples(live), "kontext_http_errors_total", status="400",
                  reason="invalid_request")
    assert after == before + len(BAD)


def test_a_5xx_escaping_a_route_is_counted(serve):
    """Whatever a route raises past its own handling is a 500 that /metrics counts."""
    live = serve()

    @live.app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("a bug")

    reply = httpx2.get(f"{live.url}/boom")
    assert reply.status_code == 500
    assert value(samples(live), "kontext_http_errors_total", status="500",
                 reason="unhandled") == 1
