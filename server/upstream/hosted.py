"""Forwarding [pro]/[max] jobs to a hosted /v2/job API with the server's own token."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import httpx2
from pydantic import SecretStr

from server.errors import UpstreamFailed, UpstreamRejected
from server.jobs.backends.base import SERVED_BY_HEADER, Outcome
from server.jobs.prepared import PreparedJob
from server.media.formats import MEDIA_TYPES, file_name
from server.settings import Settings
from server.upstream.http import (
    Fetched,
    Scrubber,
    error_text,
    fetch,
    make_client,
    tls_context,
    to_output,
    warn_if_plaintext,
    with_retries,
)
from server.wire.answers import Answer, read_answer
from server.wire.hosted import NOT_FORWARDED

log = logging.getLogger(__name__)
SERVED_BY = "upstream-hosted"


class HostedForwarder:
    """POSTs the validated job to <hosted_url>/job and reads back its multipart answer."""

    def __init__(self, settings: Settings, token: SecretStr) -> None:
        self.url = settings.hosted_url.rstrip("/") + "/job"
        self.host = httpx2.URL(self.url).host
        self.who = f"upstream {self.host}"
        warn_if_plaintext(self.url)
        self.settings = settings
        self._token = token
        self.scrub = Scrubber(token.get_secret_value())
        self._tls = tls_context(settings)
        self._client: httpx2.AsyncClient | None = None

    def _request(self, client: httpx2.AsyncClient, job: PreparedJob) -> httpx2.Request:
        config = {k: v for k, v in job.spec.echo.items() if k not in NOT_FORWARDED}
        body = json.dumps({"type": job.job_type.name, "config": config})
        files: list[tuple[str, tuple[str, bytes, str]]] = [
            ("input", (file_name(image.format, "input"), image.data, MEDIA_TYPES[image.format]))
            for image in job.inputs[:1]]
        files.append(("job", ("job.json", body.encode(), "application/json")))
        # Only the server's token goes upstream; the client's Authorization never does.
        headers = {"Authorization": f"Bearer {self._token.get_secret_value()}",
                   "Accept": f"multipart/form-data; {MEDIA_TYPES[job.output_format]}"}
        params = {"price": "true"} if job.price else {}
        return client.build_request("POST", self.url, params=params, headers=headers,
                                    files=files)

    async def forward(self, job: PreparedJob) -> Outcome:
        """Send the job upstream, retrying 429 within the budget; convert the answer."""
        if self._client is None:
            self._client = make_client(self.settings, self._tls)
        client, started = self._client, time.monotonic()
        fetched = await with_retries(
            lambda: fetch(client, self._request(client, job),
                          self.settings.upstream_max_bytes, self.who),
            self.settings.upstream_retry_budget, self.who)
        answer = read_answer(fetched.headers.get("content-type"), fetched.body)
        self._raise_for_status(fetched, answer)
        if answer.output is None:
            raise UpstreamFailed(f"{self.who} answered {fetched.status} without an output "
                                 f"image (content type {fetched.content_type or 'none'!r})")
        fmt = job.output_format
        data = await asyncio.to_thread(to_output, answer.output, fmt,
                                       self.settings.jpeg_quality, self.who,
                                       self.settings.upstream_max_bytes)
        return self._outcome(data, job, answer.job or {}, time.monotonic() - started)

    def _raise_for_status(self, fetched: Fetched, answer: Answer) -> None:
        status = fetched.status
        if 200 <= status < 300:
            return
        upstream_error = (answer.job or {}).get("error")
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

    def _outcome(self, data: bytes, job: PreparedJob, upstream_job: dict[str, Any],
                 elapsed: float) -> Outcome:
        """Upstream's metrics and price, and where the job ran."""
        log.info("forwarded to %s: upstream job %s", self.host, upstream_job.get("id"))
        metrics = upstream_job.get("metrics")
        return Outcome(
            data, job.output_format,
            metrics if isinstance(metrics, dict) else {"elapsed": round(elapsed, 3)},
            served_by={"backend": SERVED_BY, "host": self.host, "job_id": upstream_job.get("id")},
            price=upstream_job.get("price"), headers={SERVED_BY_HEADER: SERVED_BY})

    async def aclose(self) -> None:
        """Close the HTTP client, if one was opened."""
        if self._client is not None:
            await self._client.aclose()
