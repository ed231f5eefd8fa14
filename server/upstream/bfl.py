"""Forwarding [pro]/[max] jobs straight to Black Forest Labs' API (contract §7).

Submit with `x-key`, poll the returned `polling_url` unchanged, download `result.sample` at
once. Polling and result URLs are followed only to the allowed origins (https, host family
and port, or the base URL's own origin), and the key goes only to the configured base URL
and the polling URL, never to the result host.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from typing import Any

import httpx2
from pydantic import SecretStr

from server.errors import (
    UpstreamFailed,
    UpstreamModerated,
    UpstreamOutputModerated,
    UpstreamRejected,
    UpstreamTimeout,
)
from server.jobs.backends.base import SERVED_BY_HEADER, Outcome
from server.jobs.prepared import PreparedJob
from server.media.formats import ImageFormat
from server.settings import Settings
from server.upstream.http import (
    Fetched,
    Scrubber,
    TransportFailed,
    allowed_origins,
    checked_url,
    describe_status,
    fetch,
    make_client,
    retry_after,
    tls_context,
    to_output,
    warn_if_plaintext,
    with_retries,
)
from server.wire.answers import json_object
from server.wire.hosted import hosted_kind

log = logging.getLogger(__name__)
SERVED_BY = "upstream-bfl"
MODERATED = ("Request Moderated", "Content Moderated")
FAILED = ("Error", "Task not found")
#: Polls start at upstream_poll_interval and back off by this factor up to MAX_POLL_WAIT.
BACKOFF, MAX_POLL_WAIT = 1.5, 5.0
#: Redirects of the result download followed, each one re-checked against the allowed hosts.
MAX_REDIRECTS = 3


def _json(fetched: Fetched) -> dict[str, Any]:
    return json_object(fetched.body) or {}


class BflForwarder:
    """One BFL job: submit → poll → download."""

    def __init__(self, settings: Settings, key: SecretStr) -> None:
        self.base = settings.bfl_url.rstrip("/")
        self.host = httpx2.URL(self.base).host
        self.who = f"BFL ({self.host})"
        self.allowed = allowed_origins(settings.upstream_hosts, httpx2.URL(self.base))
        warn_if_plaintext(self.base)
        self.settings = settings
        self._key = key
        self.scrub = Scrubber(key.get_secret_value())
        self._tls = tls_context(settings)
        self._client: httpx2.AsyncClient | None = None

    def _keyed(self, method: str, url: httpx2.URL | str, **kwargs: Any) -> httpx2.Request:
        """A request carrying the key: only ever to the base host or the checked polling host."""
        assert self._client is not None
        headers = {"x-key": self._key.get_secret_value(), "accept": "application/json"}
        return self._client.build_request(method, url, headers=headers, **kwargs)

    def _body(self, job: PreparedJob, fmt: ImageFormat) -> dict[str, Any]:
        config = job.spec.echo
        body = {"prompt": config["prompt"], "seed": config["seed"],
                "prompt_upsampling": config["prompt_upsampling"],
                "safety_tolerance": config["safety_tolerance"],
                # Explicit: BFL's default output format has changed over time.
                "output_format": fmt}
        if config.get("aspect_ratio"):
            body["aspect_ratio"] = config["aspect_ratio"]
        if job.inputs:
            body["input_image"] = base64.b64encode(job.inputs[0].data).decode("ascii")
        return body

    async def forward(self, job: PreparedJob) -> Outcome:
        """Submit, poll until a final status, download the sample, convert if needed."""
        fmt = job.output_format
        if self._client is None:
            self._client = make_client(self.settings, self._tls)
        started = time.monotonic()
        submitted = await self._submit(job, fmt)
        polling_url = checked_url(submitted.get("polling_url"), self.allowed, "polling_url")
        result = await self._poll(polling_url)
        sample = result.get("result", {}).get("sample") \
            if isinstance(result.get("result"), dict) else None
        data = await self._download(sample)
        output = await asyncio.to_thread(to_output, data, fmt, self.settings.jpeg_quality,
                                         f"{self.who} result", self.settings.upstream_max_bytes)
        return self._outcome(output, job, submitted, polling_url, time.monotonic() - started)

    async def _submit(self, job: PreparedJob, fmt: ImageFormat) -> dict[str, Any]:
        url = f"{self.base}/v1/flux-kontext-{hosted_kind(job.job_type.name).model}"
        body = self._body(job, fmt)
        fetched = await with_retries(
            lambda: fetch(self._client, self._keyed("POST", url, json=body),
                          self.settings.upstream_max_bytes, self.who),
            self.settings.upstream_retry_budget, self.who)
        status = fetched.status
        if status == 402:
            raise UpstreamFailed(f"the upstream account has no credits: {self.who} answered "
                                 "402; top it up at BFL")
        if status in (401, 403):
            raise UpstreamFailed(f"{self.who} refused the server's API key ("
                                 f"{describe_status(fetched, 'it', self.scrub)})")
        if 400 <= status < 500:
            raise UpstreamRejected(describe_status(fetched, self.who, self.scrub), status)
        if status != 200:
            raise UpstreamFailed(describe_status(fetched, self.who, self.scrub))
        submitted = _json(fetched)
        if not submitted.get("id") or not submitted.get("polling_url"):
            raise UpstreamFailed(f"{self.who} accepted the job but its answer has no id and "
                                 "polling_url")
        return submitted

    async def _poll(self, url: httpx2.URL) -> dict[str, Any]:
        """Poll `url` (unchanged) with backoff until a final status; the Ready answer.

        A poll only reads, and BFL goes on running (and billing) the job whatever happens
        to one poll: a transient failure (a 5xx, 429, a broken connection, a timeout) is
        polled again, until the job's own time limit (upstream_job_timeout) ends it.
        """
        wait = self.settings.upstream_poll_interval
        while True:
            await asyncio.sleep(wait)
            wait = min(wait * BACKOFF, MAX_POLL_WAIT)
            try:
                fetched = await fetch(self._client, self._keyed("GET", url),
                                      self.settings.upstream_max_bytes, f"{self.who} polling")
            except (TransportFailed, UpstreamTimeout) as exc:
                log.warning("%s; polling again (BFL still runs the job)", exc.message)
                continue
            if fetched.status == 429 or fetched.status >= 500:
                log.warning("%s polling answered %d; polling again", self.who, fetched.status)
                if fetched.status == 429:  # no longer than the job may last anyway
                    wait = max(wait, min(retry_after(fetched.headers),
                                         self.settings.upstream_job_timeout))
                continue
            answer = _json(fetched)
            if answer.get("status") == "Ready":
                return answer
            self._refuse_unless_pending(answer, fetched.status)

    def _refuse_unless_pending(self, answer: dict[str, Any], http_status: int) -> None:
        """The ApiError of a final poll answer other than Ready; nothing while Pending."""
        status = answer.get("status")
        details = self._details(answer)
        if status == "Content Moderated":  # the output, after generation
            raise UpstreamOutputModerated(f"BFL moderation refused the output: {status}"
                                          f"{details}")
        if status in MODERATED:  # the prompt or the input, before generation
            raise UpstreamModerated(f"BFL moderation refused the job: {status}{details}")
        if status in FAILED:
            raise UpstreamFailed(f"{self.who} reported {status!r} for the job{details}")
        if status != "Pending" or http_status != 200:
            raise UpstreamFailed(f"{self.who} polling answered {http_status} with "
                                 f"status {self.scrub(str(status))!r}")

    def _details(self, answer: dict[str, Any]) -> str:
        details = answer.get("details")
        return f" ({self.scrub(json.dumps(details))})" if details else ""

    async def _download(self, sample: object) -> bytes:
        """The result image: https, allowed hosts only, no key sent, redirects re-checked."""
        what = "result.sample URL"
        for _ in range(MAX_REDIRECTS + 1):
            url = checked_url(sample, self.allowed, what)
            # A plain request: the sample host never sees the key.
            fetched = await fetch(self._client, self._client.build_request("GET", url),
                                  self.settings.upstream_max_bytes, f"result host {url.host}")
            if fetched.status in (301, 302, 303, 307, 308) and "location" in fetched.headers:
                sample, what = str(url.join(fetched.headers["location"])), "result redirect"
                continue
            if fetched.status != 200:
                raise UpstreamFailed(f"downloading the result from {url.host} answered "
                                     f"{fetched.status}")
            return fetched.body
        raise UpstreamFailed(f"the result download redirected more than {MAX_REDIRECTS} times")

    def _outcome(self, data: bytes, job: PreparedJob, submitted: dict[str, Any],
                 polling_url: httpx2.URL, elapsed: float) -> Outcome:
        cost = submitted.get("cost")
        log.info("forwarded to %s: upstream job %s", self.host, submitted.get("id"))
        return Outcome(
            data, job.output_format, {"elapsed": round(elapsed, 3)},
            served_by={"backend": SERVED_BY, "host": self.host,
                       "polling_host": polling_url.host, "job_id": submitted.get("id")},
            # 1 credit = $0.01; without a cost in BFL's answer the price is unknown.
            price={"product": job.job_type.name, "dollars": round(cost / 100, 4)}
            if isinstance(cost, int | float) else None,
            headers={SERVED_BY_HEADER: SERVED_BY})

    async def aclose(self) -> None:
        """Close the HTTP client, if one was opened."""
        if self._client is not None:
            await self._client.aclose()
