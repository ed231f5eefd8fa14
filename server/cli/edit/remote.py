"""`kontext edit --server`: one job through the server's async API, its progress followed
through the job's server-sent events; Ctrl-C cancels the job on the server."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import httpx2

from server.cli.batch.remote_client import job_url
from server.cli.edit.progress import StepProgress
from server.cli.edit.result import Edited, EditFailed
from server.jobs.types import DEV_KONTEXT
from server.media.formats import MEDIA_TYPES, ImageFormat


def _refusal(response: httpx2.Response) -> EditFailed:
    """The server's error of a non-2xx answer (a failed job JSON, or plain text)."""
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        error = None
    return EditFailed(f"HTTP {response.status_code}: "
                      f"{error or response.text.strip()[:300] or '(empty body)'}")


def _submit(client: httpx2.Client, url: str, config: dict[str, Any], image: bytes,
            filename: str, fmt: ImageFormat, timeout: float,
            job_type: str = DEV_KONTEXT) -> dict[str, Any]:
    body = json.dumps({"type": job_type, "config": config}).encode()
    files = [("job", ("job.json", body, "application/json")),
             ("input", (filename, image, "application/octet-stream"))]

    def post() -> httpx2.Response:
        # The output file is named after the format Accept chooses (output.png, ...).
        return client.post(url, files=files, headers={"Accept": MEDIA_TYPES[fmt]})

    response = post()
    if response.status_code == 503 and _waited_until_ready(client, url, timeout):
        response = post()
    if response.status_code != 201:
        raise _refusal(response)
    return response.json()


#: /readyz states from which a server becomes ready by itself.
COMING_UP = ("loading", "warming_up")


def _waited_until_ready(client: httpx2.Client, url: str, timeout: float) -> bool:
    """While the server is still loading its model (its /readyz says so), wait for it: a
    new user starts the demo server and edits at once. Any other answer (failed, shutting
    down, no /readyz on another kind of server) returns False: the job's 503 says why."""
    readyz = url.removesuffix("/async").removesuffix("/v2/job") + "/readyz"
    deadline, said = time.monotonic() + timeout, False
    while time.monotonic() < deadline:
        try:
            answer = client.get(readyz)
            state = answer.json().get("state") if answer.status_code == 503 else None
        except (httpx2.HTTPError, ValueError, AttributeError):
            return False
        if answer.status_code == 200:
            return said
        if state not in COMING_UP:
            return False
        if not said:
            print("kontext edit: the server is still loading its model; waiting for it "
                  "(Ctrl-C stops)", file=sys.stderr, flush=True)
            said = True
        time.sleep(1.0)  # a person waiting: once a second is plenty, and cheap for it
    return False


def _follow(client: httpx2.Client, url: str, progress: StepProgress) -> dict[str, Any]:
    """The final job JSON, showing each `progress` event on the way."""
    with client.sse(url) as events:  # httpx2's own server-sent events
        if events.response.status_code != 200:
            events.response.read()
            raise _refusal(events.response)
        for event in events:
            job = event.json()
            if event.event == "progress":
                progress.show(job.get("state", {}).get("progress") or {})
            elif event.event in ("processed", "failed"):
                return job
    raise EditFailed(f"the server closed {url} before the job finished")


def edit_remote(server: str, token: str | None, config: dict[str, Any], image: bytes,
                filename: str, fmt: ImageFormat, progress: StepProgress,
                timeout: float, job_type: str = DEV_KONTEXT) -> Edited:
    """Submit, follow, fetch the output; EditFailed with the server's words on failure."""
    url = job_url(server) + "/async"
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with httpx2.Client(headers=headers, timeout=timeout) as client:
            job_id = _submit(client, url, config, image, filename, fmt, timeout,
                             job_type)["id"]
            try:
                final = _follow(client, f"{url}/{job_id}/events", progress)
            except KeyboardInterrupt:
                client.delete(f"{url}/{job_id}", timeout=10)  # cancel it there too
                raise
            if final["state"]["current"] != "completed":
                raise EditFailed(final.get("error") or "the job failed")
            names = client.get(f"{url}/{job_id}/output").json()
            output = client.get(f"{url}/{job_id}/output/{names[0]}")
            if output.status_code != 200:
                raise _refusal(output)
            return Edited(output.content, final)
    except httpx2.ConnectError as exc:
        raise EditFailed(f"no server answers at {server} ({exc}): start one (./scripts/demo.sh "
                         "or kontext serve), or name another with --server URL") from exc
    except httpx2.HTTPError as exc:
        raise EditFailed(f"{type(exc).__name__} talking to {url}: {exc}") from exc
