"""`--server`: send the rows to a /v2/job server, a bounded number at a time.

First Ctrl-C: no new row starts and the jobs in flight finish (on a paid service they
are already being paid for); a second Ctrl-C abandons them.
"""

from __future__ import annotations

import asyncio
import io
import time
from dataclasses import dataclass, field
from typing import Any

import httpx2
from PIL import Image

from server.atomic_files import write_atomic
from server.cli.batch.manifest import Row
from server.cli.batch.remote_client import RetryPolicy, Unreachable, job_url, post_job
from server.cli.batch.report import Finish, job_notes
from server.cli.batch.stop import StopRequest
from server.cli.photos import Photo, read_photo
from server.errors import ApiError
from server.media.decode import ImageLimits, decode_input_image

#: Answers after which every other row would fail the same way: stop the batch.
FATAL_STATUSES = (401, 403)


@dataclass(frozen=True)
class RemoteOptions:
    """Where and how to send the jobs."""

    server: str
    token: str | None = None
    concurrency: int = 2
    timeout: float = 600.0
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    limits: ImageLimits = field(default_factory=ImageLimits)


class RowFailed(Exception):
    """This row failed; the message is its report error."""

    def __init__(self, message: str, attempts: int = 0, status: int | None = None) -> None:
        super().__init__(message)
        self.attempts, self.status = attempts, status


def run_remote(rows: list[Row], options: RemoteOptions, finish: Finish,
               stop: StopRequest) -> str | None:
    """Run every row (until stopped); returns why the batch was cut short, if it was."""
    return asyncio.run(_run_all(rows, options, finish, stop))


async def _run_all(rows: list[Row], options: RemoteOptions, finish: Finish,
                   stop: StopRequest) -> str | None:
    slots = asyncio.Semaphore(max(1, options.concurrency))
    headers = {"Authorization": f"Bearer {options.token}"} if options.token else {}
    fatal: list[str] = []
    url = job_url(options.server)
    async with httpx2.AsyncClient(headers=headers, timeout=options.timeout) as client:

        async def one(row: Row) -> None:
            async with slots:
                if stop.is_set():
                    return
                started = time.monotonic()
                try:
                    extra = await _run_row(client, url, row, options)
                except RowFailed as exc:
                    finish(row, "failed", config=_send_config(row), error=str(exc),
                           seconds=round(time.monotonic() - started, 3), attempts=exc.attempts)
                    if exc.status in FATAL_STATUSES:
                        fatal.append(f"{url} refused the token: {exc}")
                        stop.event.set()
                    return
                finish(row, "ok", seconds=round(time.monotonic() - started, 3), **extra)

        await asyncio.gather(*(one(row) for row in rows))
    return fatal[0] if fatal else None


def _send_config(row: Row) -> dict[str, Any]:
    """The config as sent: as prepared to be sent again (resolved seed included, unset
    optional fields and the sizes an aspect_ratio decided left out), `reference_method`
    (our extension) only with references, so that a one-image row is a job the hosted API
    takes too."""
    exclude = set() if len(row.images) > 1 else {"reference_method"}
    return {name: value for name, value in row.spec.resend.items() if name not in exclude}


async def _run_row(client: httpx2.AsyncClient, url: str, row: Row,
                   options: RemoteOptions) -> dict[str, Any]:
    """Check the image, post the job, check and write the output; the report fields."""
    try:
        photos = await asyncio.to_thread(_read_images, row, options.limits)
        answer = await post_job(client, url, _send_config(row),
                                [(photo.name, photo.data) for photo in photos], row.fmt,
                                options.policy, row.spec.job_type.name)
    except Unreachable as exc:
        raise RowFailed(str(exc), exc.attempts) from exc
    except (ApiError, OSError) as exc:
        raise RowFailed(str(exc)) from exc
    if answer.status != 200 or answer.output is None:
        error = answer.error if answer.status != 200 else "HTTP 200 without an output image"
        raise RowFailed(error, answer.attempts, answer.status)
    size = (row.config.width, row.config.height)
    await asyncio.to_thread(_check_output, answer.output, size, answer.attempts)
    try:
        await asyncio.to_thread(write_atomic, row.output, answer.output)
    except OSError as exc:
        raise RowFailed(f"cannot write {row.output}: {exc}", answer.attempts) from exc
    job = answer.job or {}
    return {"config": job.get("config") or _send_config(row), "metrics": job.get("metrics"),
            "job_id": job.get("id"), "attempts": answer.attempts,
            **job_notes(job.get("notice"), photos)}


def _read_images(row: Row, limits: ImageLimits) -> list[Photo]:
    """Each input as it will be sent (shrunk when too large), after checking it with the
    server's own image rules (named as the row names them: `image`, or `image[i]`)."""
    several = len(row.images) > 1
    photos = []
    for index, path in enumerate(row.images):
        photo = read_photo(path, limits)
        decode_input_image(photo.data, f"image[{index}]" if several else "image", limits)
        photos.append(photo)
    return photos


def _check_output(data: bytes, size: tuple[int, int], attempts: int) -> None:
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            got = image.size
    except (OSError, ValueError, SyntaxError) as exc:
        raise RowFailed(f"the server's output is not a readable image: {exc}", attempts) from exc
    if got != size:
        raise RowFailed(f"the server's output is {got[0]}x{got[1]}, expected "
                        f"{size[0]}x{size[1]}", attempts)
