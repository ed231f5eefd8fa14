"""Driving the async API (/v2/job/async) from tests: submit, poll, read events."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx2

from helpers.http import DEV, input_part, job_part


def headers_for(accept: str | None = None, token: str | None = None) -> dict[str, str]:
    """Accept and Authorization headers, when given."""
    headers = {"Accept": accept} if accept else {}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return headers


def submit(url: str, config: dict[str, Any], image: bytes | None, accept: str | None = None,
           token: str | None = None, job_type: str = DEV) -> httpx2.Response:
    """POST /v2/job/async as multipart (inputs first, like the JS client)."""
    files = ([input_part(image)] if image is not None else []) + [job_part(config, job_type)]
    return httpx2.post(f"{url}/v2/job/async", files=files,
                      headers=headers_for(accept, token), timeout=30)


def get(url: str, job_id: str, path: str, token: str | None = None) -> httpx2.Response:
    """GET /v2/job/async/{id}/{path}."""
    return httpx2.get(f"{url}/v2/job/async/{job_id}/{path}", headers=headers_for(token=token),
                     timeout=30)


def wait_until(check: Callable[[], Any], timeout: float = 30, what: str = "condition") -> Any:
    """Poll `check` until it returns something truthy; that value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.02)
    raise TimeoutError(f"{what} not reached after {timeout}s")


def wait_state(url: str, job_id: str, state: str, token: str | None = None) -> None:
    """Block until job.state.current reads `state`."""
    wait_until(lambda: get(url, job_id, "job.state.current", token).text == state,
               what=f"job {job_id} {state}")


def events(url: str, job_id: str, token: str | None = None) -> list[tuple[str, dict]]:
    """Every (event, job JSON) of the job's events stream, until the server ends it."""
    seen = []
    with httpx2.Client(timeout=30) as client, client.sse(
        f"{url}/v2/job/async/{job_id}/events", headers=headers_for(token=token)
    ) as source:
        assert source.response.headers["content-type"].startswith("text/event-stream")
        for event in source:
            seen.append((event.event, json.loads(event.data)))
    return seen
