"""`--local`: run the rows through the job service in this process, one at a time.

The jobs path (engines, local backend, job service) is built by the composition root, as
the server's is (server/wiring.py: local_jobs), and each row is submitted with the config
its validation prepared (the job service takes it as it is), so a row means the same edit
here as through the server. `kontext edit
--local` runs its one edit through the same runner (`run_one`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from pipelines.errors import EngineFailure
from server.atomic_files import write_atomic
from server.cli.batch.manifest import Row
from server.cli.batch.report import Finish, job_notes
from server.cli.batch.stop import StopRequest
from server.cli.photos import Photo, read_photo
from server.errors import ApiError, ClientGone
from server.jobs.job import Job, Listener
from server.jobs.prepared import Submission
from server.jobs.record import new_job_id
from server.settings import Settings
from server.wiring import JobsPath, local_jobs

log = logging.getLogger(__name__)


class LocalRunner:
    """Owns an event loop and the jobs path for the whole batch."""

    def __init__(self, settings: Settings) -> None:
        # WeightsError here: bad --weights, before any load. One device, no warm-up: the
        # rows run one after another, and the first pays the first-call costs once.
        self.path: JobsPath = local_jobs(settings)
        self.loop = asyncio.new_event_loop()
        started = time.monotonic()
        self.loop.run_until_complete(self.path.engines.start())
        refusal = self.path.engines.unavailable()
        if refusal is not None:
            self.close()
            raise EngineFailure(f"the engine did not load: {refusal.message}")
        log.info("engine loaded in %.1fs: %s", time.monotonic() - started,
                 self.path.engines.info)

    def run_one(self, submission: Submission, stop: StopRequest,
                listener: Listener | None = None) -> Job:
        """Run one job to its end; `listener(job)` after each change; the first Ctrl-C of
        `stop` cancels it (the job then fails with ClientGone)."""

        async def one() -> Job:
            stopped = asyncio.Event()
            stop.on_stop(lambda: self.loop.call_soon_threadsafe(stopped.set))
            return await self._run_job(submission, stopped.wait, listener)

        return self.loop.run_until_complete(one())

    async def _run_job(self, submission: Submission, abandoned: Callable[[], Awaitable[Any]],
                       listener: Listener | None = None) -> Job:
        """Submit (waiting in line) and wait for the end; refusals raise ApiError."""
        job = await self.path.service.submit(submission, new_job_id(), wait=True)
        if listener is not None:
            job.listen(listener)
        return await self.path.service.finish(job, abandoned)

    def run(self, rows: list[Row], finish: Finish, stop: StopRequest) -> None:
        """Run each row until done or stopped; a stopped edit is abandoned (nothing written)."""
        self.loop.run_until_complete(self._run_all(rows, finish, stop))

    def close(self) -> None:
        """Stop the engines (closing them), the service's backends and filter, and the
        loop."""
        self.loop.run_until_complete(self.path.engines.stop())
        self.loop.run_until_complete(self.path.service.aclose())
        self.loop.close()

    async def _run_all(self, rows: list[Row], finish: Finish, stop: StopRequest) -> None:
        stopped = asyncio.Event()
        # The first Ctrl-C wakes this loop (signal handlers run on its thread).
        stop.on_stop(lambda: self.loop.call_soon_threadsafe(stopped.set))
        for row in rows:
            if stop.is_set():
                return
            started = time.monotonic()
            try:
                photos = await asyncio.to_thread(self._photos, row)
                submission = Submission.prepared(row.spec, tuple(p.data for p in photos),
                                                 row.fmt)
                job = await self._run_job(submission, stopped.wait)
            except OSError as exc:
                _fail(finish, row, f"{type(exc).__name__}: {exc}", started)
                continue
            except ApiError as exc:  # refused (bad input image, say): the row's error
                _fail(finish, row, _row_error(exc), started)
                continue
            if isinstance(job.error, ClientGone):
                return  # Ctrl-C: abandoned, nothing written
            if job.error is not None:  # e.g. the content filter refused its image
                _fail(finish, row, _row_error(job.error), started)
                continue
            self._write(row, job, photos, finish, started)

    def _photos(self, row: Row) -> list[Photo]:
        """The row's images as a client sends them (shrunk when over the limits)."""
        return [read_photo(path, self.path.service.image_limits) for path in row.images]

    def _write(self, row: Row, job: Job, photos: list[Photo], finish: Finish,
               started: float) -> None:
        assert job.outcome is not None
        try:
            write_atomic(row.output, job.outcome.output)
        except OSError as exc:
            _fail(finish, row, f"cannot write {row.output}: {exc}", started)
            return
        # The job's metrics as the server's job JSON has them (inputs, LoRAs, tier, ...).
        finish(row, "ok", seconds=round(time.monotonic() - started, 3),
               config=row.config.model_dump(), metrics=dict(job.record.metrics or {}),
               **job_notes(job.record.extra.get("notice"), photos))


def _row_error(exc: ApiError) -> str:
    """A refusal in the manifest's words: the input images are the row's `image` field
    (`input[2]: …` becomes `image[2]: …`)."""
    return "image" + exc.message.removeprefix("input") if exc.field == "input" else exc.message


def _fail(finish: Finish, row: Row, error: str, started: float) -> None:
    finish(row, "failed", config=row.config.model_dump(), error=error,
           seconds=round(time.monotonic() - started, 3))
