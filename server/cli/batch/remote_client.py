"""Posting one dev-kontext job to a /v2/job server, with the retries of a well-behaved client.

The retry loop is hand-written because its policy depends on the answer itself (429 waits
for Retry-After, 5xx backs off, 4xx never retries), which generic retry helpers model poorly.
"""

from __future__ import annotations

import asyncio
import json
import random
from dataclasses import dataclass
from typing import Any

import httpx2

from server.jobs.types import DEV_KONTEXT
from server.media.formats import MEDIA_TYPES, ImageFormat
from server.wire.answers import read_answer
from server.wire.answers import retry_after_seconds as parse_retry_after

#: Like the official client: 429 is retried up to 10 times after Retry-After (1 s if absent).
RETRIES_429 = 10
#: A Retry-After beyond this is capped (a misbehaving server cannot park the batch for hours).
MAX_WAIT_SECONDS = 300.0


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry one job."""

    retries: int = 2
    retries_429: int = RETRIES_429
    backoff_seconds: float = 1.0


@dataclass(frozen=True)
class JobAnswer:
    """The final answer to one job: status, job JSON and output when present, attempts made."""

    status: int
    job: dict[str, Any] | None
    output: bytes | None
    text: str
    attempts: int

    @property
    def error(self) -> str:
        """What went wrong, in the server's words when it gave some."""
        if self.job and isinstance(self.job.get("error"), str):
            return f"HTTP {self.status}: {self.job['error']}"
        return f"HTTP {self.status}: {self.text.strip()[:300] or '(empty body)'}"


class Unreachable(Exception):
    """The server could not be reached after the allowed retries."""

    def __init__(self, message: str, attempts: int) -> None:
        super().__init__(message)
        self.attempts = attempts


def job_url(server: str) -> str:
    """The POST URL for a server given as its root (http://host:8000) or its /v2 base."""
    base = server.rstrip("/")
    return f"{base}/job" if base.endswith("/v2") else f"{base}/v2/job"


def retry_after_seconds(response: httpx2.Response) -> float | None:
    """Retry-After as seconds (integer or HTTP date), capped; None when absent or unreadable."""
    seconds = parse_retry_after(response.headers.get("Retry-After"))
    return None if seconds is None else min(seconds, MAX_WAIT_SECONDS)


async def post_job(client: httpx2.AsyncClient, url: str, config: dict[str, Any],
                   inputs: list[tuple[str, bytes]], fmt: ImageFormat,
                   policy: RetryPolicy, job_type: str = DEV_KONTEXT) -> JobAnswer:
    """POST the job (multipart: `job`, then one `input` per (file name, bytes), in order),
    retrying 429, 5xx and transport errors."""
    body = json.dumps({"type": job_type, "config": config}).encode()
    files = [("job", ("job.json", body, "application/json")),
             *(("input", (name, data, "application/octet-stream")) for name, data in inputs)]
    headers = {"Accept": f"multipart/form-data; {MEDIA_TYPES[fmt]}"}
    attempts = too_many = failures = 0
    while True:
        attempts += 1
        try:
            response = await client.post(url, files=files, headers=headers)
        except httpx2.TransportError as exc:
            failures += 1
            if failures > policy.retries:
                raise Unreachable(f"{type(exc).__name__} talking to {url}: {exc}",
                                  attempts) from exc
            await asyncio.sleep(_backoff(policy, failures))
            continue
        status = response.status_code
        if status == 429 and too_many < policy.retries_429:
            too_many += 1
            await asyncio.sleep(retry_after_seconds(response) or 1.0)
            continue
        if status >= 500 and failures < policy.retries:
            failures += 1
            wait = retry_after_seconds(response)
            await asyncio.sleep(wait if wait is not None else _backoff(policy, failures))
            continue
        return await parse_answer(response, attempts)


def _backoff(policy: RetryPolicy, failure: int) -> float:
    """Exponential backoff with jitter, so parallel rows do not retry in lockstep."""
    return policy.backoff_seconds * 2 ** (failure - 1) * random.uniform(1.0, 1.5)


async def parse_answer(response: httpx2.Response, attempts: int) -> JobAnswer:
    """The job JSON and output image of an answer, whichever form the server chose."""
    answer = read_answer(response.headers.get("Content-Type"), response.content)
    output = answer.output if response.is_success or answer.job is not None else None
    text = "" if output is not None and answer.job is None else response.text
    return JobAnswer(response.status_code, answer.job, output, text, attempts)
