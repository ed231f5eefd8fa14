"""Forwarding [pro]/[max] jobs to a hosted /v2/job API with the server's own token."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import time
from typing import Any

import httpx
from PIL import Image
from pydantic import SecretStr
from starlette.datastructures import Headers, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from server.accept import MEDIA_TYPES, ImageFormat
from server.backend import Output, PreparedJob
from server.errors import UpstreamFailed, UpstreamRejected
from server.settings import Settings
from server.upstream_http import (
    PIL_FORMATS,
    SERVED_BY_HEADER,
    Fetched,
    Scrubber,
    error_text,
    fetch,
    make_client,
    tls_context,
    to_output,
    with_retries,
)

log = logging.getLogger(__name__)
SERVED_BY = "upstream-hosted"


async def parse_parts(fetched: Fetched) -> dict[str, bytes]:
    """The parts of a multipart answer by name (first of each); {} if it is not multipart."""
    if fetched.content_type != "multipart/form-data":
        return {}

    async def body():
        yield fetched.body

    headers = Headers({"content-type": fetched.headers["content-type"]})
    parser = MultiPartParser(headers, body(), max_files=8, max_fields=8,
                             max_part_size=len(fetched.body) + 1)
    try:
        form = await parser.parse()
    except MultiPartException:
        return {}
    parts: dict[str, bytes] = {}
    for name, value in form.multi_items():
        if name not in parts:
            parts[name] = await value.read() if isinstance(value, UploadFile) else value.encode()
    await form.close()
    return parts


def _job_json(raw: bytes | None) -> dict[str, Any]:
    try:
        data = json.loads(raw) if raw else None
    except ValueError:
        data = None
    return data if isinstance(data, dict) else {}


def _input_file(data: bytes) -> tuple[str, bytes, str]:
    """(filename, bytes, media type) of an input image that has already passed validation."""
    fmt = PIL_FORMATS.get(Image.open(io.BytesIO(data)).format or "", "jpeg")
    return (f"input.{'jpg' if fmt == 'jpeg' else fmt}", data, MEDIA_TYPES[fmt])


class HostedForwarder:
    """POSTs the validated job to <hosted_url>/job and reads back its multipart answer."""

    def __init__(self, settings: Settings, token: SecretStr) -> None:
        self.url = settings.hosted_url.rstrip("/") + "/job"
        self.host = httpx.URL(self.url).host
        self.who = f"upstream {self.host}"
        self.settings = settings
        self._token = token
        self.scrub = Scrubber(token.get_secret_value())
        self._tls = tls_context(settings)
        self._client: httpx.AsyncClient | None = None

    def _request(self, client: httpx.AsyncClient, job: PreparedJob,
                 fmt: ImageFormat) -> httpx.Request:
        body = json.dumps({"type": job.job_type.name, "config": job.record.config})
        files = [("input", _input_file(data)) for data in job.inputs[:1]]
        files.append(("job", ("job.json", body.encode(), "application/json")))
        # Only the server's token goes upstream; the client's Authorization never does.
        headers = {"Authorization": f"Bearer {self._token.get_secret_value()}",
                   "Accept": f"multipart/form-data; {MEDIA_TYPES[fmt]}"}
        params = {"price": "true"} if job.record.price is not None else {}
        return client.build_request("POST", self.url, params=params, headers=headers,
                                    files=files)

    async def forward(self, job: PreparedJob, fmt: ImageFormat) -> Output:
        """Send the job upstream, retrying 429 within the budget; convert the answer."""
        if self._client is None:
            self._client = make_client(self.settings, self._tls)
        client, started = self._client, time.monotonic()
        fetched = await with_retries(
            lambda: fetch(client, self._request(client, job, fmt),
                          self.settings.upstream_max_bytes, self.who),
            self.settings.upstream_retry_budget, self.who)
        parts = await parse_parts(fetched)
        await self._raise_for_status(fetched, parts)
        if fetched.content_type.startswith("image/"):
            data, upstream_job = fetched.body, {}
        elif "output" in parts:
            data, upstream_job = parts["output"], _job_json(parts.get("job"))
        else:
            raise UpstreamFailed(f"{self.who} answered {fetched.status} without an output "
                                 f"image (content type {fetched.content_type or 'none'!r})")
        output = await asyncio.to_thread(to_output, data, fmt, self.settings.jpeg_quality,
                                         self.who)
        self._record(job, upstream_job, time.monotonic() - started)
        return output

    async def _raise_for_status(self, fetched: Fetched, parts: dict[str, bytes]) -> None:
        status = fetched.status
        if 200 <= status < 300:
            return
        upstream_error = _job_json(parts.get("job")).get("error")
        text = self.scrub(str(upstream_error)) if upstream_error else \
            error_text(fetched, self.scrub)
        if status in (401, 403):
            # The client's token was fine; ours was not. Not the client's to fix: 502.
            raise UpstreamFailed(f"{self.who} refused the server's credentials ({status}): "
                                 f"{text}")
        if 400 <= status < 500:
            raise UpstreamRejected(f"{self.who} answered {status}: {text}", status=status)
        if 300 <= status < 400:
            raise UpstreamFailed(f"{self.who} answered a redirect ({status}), not followed")
        raise UpstreamFailed(f"{self.who} answered {status}: {text}")

    def _record(self, job: PreparedJob, upstream_job: dict[str, Any], elapsed: float) -> None:
        """Keep upstream's metrics and price; say where the job ran."""
        record = job.record
        if record.price is not None:
            record.price = upstream_job.get("price")
        record.extra["served_by"] = {"backend": SERVED_BY, "host": self.host,
                                     "job_id": upstream_job.get("id")}
        job.headers[SERVED_BY_HEADER] = SERVED_BY
        log.info("forwarded to %s: upstream job %s", self.host, upstream_job.get("id"))
        metrics = upstream_job.get("metrics")
        record.complete(metrics if isinstance(metrics, dict) else {"elapsed": round(elapsed, 3)})

    async def aclose(self) -> None:
        """Close the HTTP client, if one was opened."""
        if self._client is not None:
            await self._client.aclose()
