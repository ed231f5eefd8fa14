"""A fake upstream: a real HTTPS server on loopback speaking the hosted /v2/job protocol and
Black Forest Labs' submit → poll → sample protocol, scriptable per test.

Its certificate comes from a throwaway `trustme` CA (for both `localhost` and `127.0.0.1`,
so tests have two distinct host names); the server under test trusts it through
`upstream_ca_file`. Every request it receives is recorded in `seen`.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trustme
from PIL import Image
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from urllib3.fields import RequestField
from urllib3.filepost import encode_multipart_formdata

from helpers.live_server import LiveServer, start_server

MEDIA = {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp"}
PIL_NAME = {"jpeg": "JPEG", "png": "PNG", "webp": "WEBP"}


@dataclass
class Seen:
    """One request the fake received."""

    route: str
    method: str
    host: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    form: dict[str, bytes] = field(default_factory=dict)


#: A scripted reply: given the request (and the fake), the response to send.
Handler = Callable[[Seen, "FakeUpstream"], Response | Awaitable[Response]]


def image_file(fmt: str = "jpeg", size: tuple[int, int] = (96, 64),
               color: tuple[int, int, int] = (10, 200, 30)) -> bytes:
    """A small real image in `fmt`."""
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, PIL_NAME[fmt])
    return buffer.getvalue()


def multipart(parts: list[tuple[str, bytes, str, str]], status: int = 200) -> Response:
    """A multipart/form-data response of (name, data, filename, content type) parts."""
    fields = []
    for name, data, filename, content_type in parts:
        part = RequestField(name=name, data=data, filename=filename)
        part.make_multipart(content_type=content_type)
        fields.append(part)
    body, content_type = encode_multipart_formdata(fields)
    return Response(body, status_code=status, media_type=content_type)


def reply(status: int, body: object = "", headers: dict[str, str] | None = None) -> Handler:
    """A fixed reply: JSON when `body` is a dict, else text."""
    def handler(seen: Seen, fake: FakeUpstream) -> Response:
        if isinstance(body, dict):
            return JSONResponse(body, status_code=status, headers=headers)
        return Response(str(body), status_code=status, headers=headers, media_type="text/plain")
    return handler


def hang(seconds: float) -> Handler:
    """Answer only after `seconds` (longer than the server's timeout)."""
    async def handler(seen: Seen, fake: FakeUpstream) -> Response:
        await asyncio.sleep(seconds)
        return Response("too late", status_code=200)
    return handler


def after(seconds: float, handler: Handler) -> Handler:
    """`handler`'s reply, sent `seconds` late (a slow upstream job)."""
    async def delayed(seen: Seen, fake: FakeUpstream) -> Response:
        await asyncio.sleep(seconds)
        answer = handler(seen, fake)
        return await answer if asyncio.iscoroutine(answer) else answer  # type: ignore[return-value]
    return delayed


class Truncated(Response):
    """Declares more bytes than it sends, then ends the response: a body cut short."""

    def __init__(self, body: bytes, content_type: str) -> None:
        super().__init__(body, media_type=content_type)
        self.declared = len(body) * 4 + 100

    async def __call__(self, scope, receive, send) -> None:
        headers = [(b"content-type", self.media_type.encode()),
                   (b"content-length", str(self.declared).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": self.body, "more_body": False})


class FakeUpstream:
    """The server and its script. `script[route]` is consumed first; then the default."""

    def __init__(self, workdir: Path) -> None:
        ca = trustme.CA()
        self.ca_file = workdir / "fake-ca.pem"
        ca.cert_pem.write_to_path(str(self.ca_file))
        self.cert_file = workdir / "fake-server.pem"
        ca.issue_cert("localhost", "127.0.0.1").private_key_and_cert_chain_pem.write_to_path(
            str(self.cert_file))
        self.seen: list[Seen] = []
        self.script: dict[str, list[Handler]] = {}
        self.sample_base: str | None = None
        self.live: LiveServer | None = None
        self.port = 0

    def url(self, host: str = "localhost") -> str:
        """https://<host>:<port>."""
        return f"https://{host}:{self.port}"

    def reset(self) -> None:
        """Forget what was seen and scripted (between tests)."""
        self.seen.clear()
        self.script.clear()
        self.sample_base = None

    def then(self, route: str, *handlers: Handler) -> None:
        """Queue replies for `route` (hosted, submit, poll, sample)."""
        self.script.setdefault(route, []).extend(handlers)

    def requests(self, route: str) -> list[Seen]:
        """What `route` received, in order."""
        return [seen for seen in self.seen if seen.route == route]

    def start(self) -> FakeUpstream:
        """Start on 127.0.0.1 with TLS (h11, so a truncated body really is one)."""
        app = Starlette(routes=[
            Route("/v2/job", self._endpoint("hosted", default_hosted), methods=["POST"]),
            Route("/v1/flux-kontext-{model}", self._endpoint("submit", default_submit),
                  methods=["POST"]),
            Route("/v1/get_result", self._endpoint("poll", default_poll)),
            Route("/sample/{name}", self._endpoint("sample", default_sample)),
        ])
        self.live = start_server(app, wait_ready=False, ssl_certfile=str(self.cert_file),
                                 http="h11", timeout_graceful_shutdown=1)
        self.port = int(self.live.url.rsplit(":", 1)[1])
        return self

    def stop(self) -> None:
        """Stop the server."""
        if self.live is not None:
            self.live.stop()

    def _endpoint(self, route: str, default: Handler):
        async def endpoint(request: Request) -> Response:
            seen = await _record(route, request)
            self.seen.append(seen)
            queue = self.script.get(route)
            handler = queue.pop(0) if queue else default
            result = handler(seen, self)
            return await result if asyncio.iscoroutine(result) else result
        return endpoint


async def _record(route: str, request: Request) -> Seen:
    body = await request.body()
    seen = Seen(route, request.method, request.url.hostname or "", request.url.path,
                request.url.query, {k.lower(): v for k, v in request.headers.items()}, body)
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        form = await request.form()
        for name, value in form.multi_items():
            seen.form[name] = await value.read() if hasattr(value, "read") else value.encode()
    return seen


def accepted_format(seen: Seen) -> str:
    """The image format named after `multipart/form-data;` in Accept (jpeg if none)."""
    for fmt, media in MEDIA.items():
        if media in seen.headers.get("accept", ""):
            return fmt
    return "jpeg"


def hosted_job(seen: Seen, **extra: object) -> dict:
    """The job JSON the hosted API would answer for the request `seen`."""
    job = json.loads(seen.form["job"])
    body = {"id": "upstream-job-1", "type": job["type"], "state": {"current": "completed"},
            "config": job["config"], "metrics": {"elapsed": 2.5, "ips": 11.0}, **extra}
    if "price=true" in seen.query:
        body["price"] = {"product": job["type"], "dollars": 0.04}
    return body


def default_hosted(seen: Seen, fake: FakeUpstream) -> Response:
    """Success: multipart job + output in the format Accept named."""
    return hosted_output(image_file)(seen, fake)


def hosted_output(make: Callable[[str], bytes]) -> Handler:
    """Success, with the output `make(format)` in the format Accept named."""
    def handler(seen: Seen, fake: FakeUpstream) -> Response:
        fmt = accepted_format(seen)
        job = json.dumps(hosted_job(seen)).encode()
        return multipart([("job", job, "job.json", "application/json"),
                          ("output", make(fmt), f"output.{fmt}", MEDIA[fmt])])
    return handler


def default_submit(seen: Seen, fake: FakeUpstream) -> Response:
    """BFL accepted the job: id, polling_url on the same host, cost in credits."""
    polling = f"https://{seen.host}:{fake.port}/v1/get_result?id=bfl-task-1"
    return JSONResponse({"id": "bfl-task-1", "polling_url": polling, "cost": 4})


def default_poll(seen: Seen, fake: FakeUpstream) -> Response:
    """Ready, with the sample on 127.0.0.1 (a different host from `localhost`)."""
    fmt = json.loads(fake.requests("submit")[-1].body).get("output_format", "jpeg")
    base = fake.sample_base or fake.url("127.0.0.1")
    return JSONResponse({"id": "bfl-task-1", "status": "Ready",
                         "result": {"sample": f"{base}/sample/out.{fmt}", "seed": 1}})


def pending(seen: Seen, fake: FakeUpstream) -> Response:
    """Still running."""
    return JSONResponse({"id": "bfl-task-1", "status": "Pending", "result": None})


def status(name: str, **extra: object) -> Handler:
    """A poll answer with status `name`."""
    return reply(200, {"id": "bfl-task-1", "status": name, "result": None, **extra})


def default_sample(seen: Seen, fake: FakeUpstream) -> Response:
    """The result image, in the format its file name says."""
    fmt = seen.path.rsplit(".", 1)[-1]
    return Response(image_file(fmt), media_type=MEDIA[fmt])


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory):
    """A fake upstream (hosted /v2/job and BFL protocols) over HTTPS on loopback."""
    server = FakeUpstream(tmp_path_factory.mktemp("fake-upstream")).start()
    yield server
    server.stop()


class Declares(Response):
    """Declares a `declared`-byte body in Content-Length and sends only `body`, then waits:
    what a hostile upstream does to make a client read (or wait for) gigabytes."""

    def __init__(self, declared: int, body: bytes = b"x" * 1024,
                 content_type: str = "image/png") -> None:
        super().__init__(body, media_type=content_type)
        self.declared = declared

    async def __call__(self, scope, receive, send) -> None:
        headers = [(b"content-type", self.media_type.encode()),
                   (b"content-length", str(self.declared).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": self.body, "more_body": True})
        await asyncio.sleep(30)  # never finishes: only a client that reads on would notice


def drop_connection(seen: Seen, fake: FakeUpstream) -> Response:
    """The connection ends without an answer (a reset proxy, a restarted upstream)."""
    return Truncated(b"", "application/json")
