"""Async jobs (POST /v2/job/async): accepted at once, run in the background, kept on disk.

A job goes through the same JobService.prepare/execute as a synchronous one, so every job
type works. While it runs it lives in memory (with its progress, for job.json and the
events stream); once finished, its record and output live only in the JobStore, which is
what every later read is answered from. Jobs a previous process left unfinished are marked
failed at startup, with the reason, and expired jobs are deleted by a periodic task.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from server.accept import ImageFormat
from server.backend import Output, PreparedJob
from server.errors import ApiError, NotFound, NotReady, Overloaded
from server.images import ImageLimits, decode_input_image
from server.job_progress import Progress, progress_json
from server.job_store import JobStore, StoredJob
from server.logs import job_id_var
from server.service import JobService

log = logging.getLogger(__name__)

#: job.state.current of the async API, from the job JSON's state (wire contract §6).
ASYNC_STATES = {"queued": "processing", "processing": "processing",
                "completed": "processed", "failed": "failed"}
CANCELLED = "cancelled"
#: How often an accepted job looks for a place in a full engine queue.
RETRY_SECONDS = 0.5
#: How often the job in the waiting room checks whether it has entered the engine queue.
ENTER_SECONDS = 0.01
SHUT_DOWN = "the server shut down before the job finished"
RESTARTED = ("the server stopped before the job finished (it was found unfinished when the "
             "server started again); submit it again")
EXTENSIONS: dict[ImageFormat, str] = {"jpeg": "jpg", "png": "png", "webp": "webp"}
OUTPUT_TYPES = {"jpg": "image/jpeg", "png": "image/png", "webp": "image/webp"}


def output_name(fmt: ImageFormat) -> str:
    """The file name of an async job's output image: output.jpg, output.png or output.webp."""
    return f"output.{EXTENSIONS[fmt]}"


@dataclass
class ActiveJob:
    """An async job that has not finished: what it runs, its progress and its waiters."""

    job: PreparedJob
    fmt: ImageFormat
    progress: Progress
    task: asyncio.Task | None = None
    finished: bool = False
    #: Replaced on every change, so each waiter wakes once per change it has not seen.
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def id(self) -> str:
        """The job id."""
        return self.job.record.id

    def notify(self) -> None:
        """Wake everyone waiting for a change (events streams)."""
        self.changed.set()
        self.changed = asyncio.Event()

    def on_step(self, step: int, steps: int) -> None:
        """Progress from the engine, handed to the loop thread by call_soon_threadsafe."""
        self.progress.advance(step, steps)
        if self.job.record.state == "queued":
            # The local backend says `queued` until the result is back; a step means running.
            self.job.record.touch("processing")
        self.notify()


class AsyncJobs:
    """The async jobs of one server: submit, look up, cancel, stream; start and stop."""

    def __init__(self, service: JobService) -> None:
        settings = service.settings
        self.service = service
        self.store = JobStore(settings.results_dir)
        self.retention = timedelta(seconds=settings.results_retention_seconds)
        self.cleanup_seconds = settings.results_cleanup_seconds
        self.capacity = settings.async_queue_size
        self.limits = ImageLimits(max_bytes=settings.max_input_bytes)
        self.active: dict[str, ActiveJob] = {}
        #: Every job task until it ends, cancelled ones included (they finish in the worker).
        self._tasks: set[asyncio.Task] = set()
        self._cleanup: asyncio.Task | None = None
        self._waiting_room = asyncio.Lock()

    async def start(self) -> None:
        """Fail the jobs a previous process left unfinished; start the expiry cleanup."""
        try:
            left = await asyncio.to_thread(self.store.fail_unfinished, RESTARTED)
        except OSError:
            # The synchronous API still works; async jobs will fail to save, loudly.
            log.exception("cannot read the async results folder %s", self.store.root)
            left = 0
        if left:
            log.warning("%d async job(s) were unfinished when the server last stopped; "
                        "marked failed", left)
        self._cleanup = asyncio.create_task(self._clean_periodically(),
                                            name="async-results-cleanup")

    async def stop(self) -> None:
        """Cancel what is still running (marked failed, with the reason) and the cleanup."""
        for active in list(self.active.values()):
            active.job.control.cancel.set()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._cleanup is not None:
            self._cleanup.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._cleanup

    async def submit(self, job: PreparedJob, fmt: ImageFormat) -> dict[str, Any]:
        """Accept a prepared job: save its record, start it, return its job JSON.

        Raises InvalidInputImage (400) for a bad input image, Overloaded (429) when
        `async_queue_size` jobs are already unfinished.
        """
        # Decoded once more here (the backend decodes it again when the job runs) so a bad
        # image is a 400 now, as on the synchronous route, not a failed job later.
        for data in job.inputs:
            await asyncio.to_thread(decode_input_image, data, "input", self.limits)
        if len(self.active) >= self.capacity:
            raise Overloaded(f"the async queue is full ({self.capacity} unfinished jobs); "
                             "retry later", retry_after=self.service.worker.retry_after())
        if job.job_type.backend == "local" and not self.service.worker.ready:
            raise NotReady(f"the engine is {self.service.worker.state.replace('_', ' ')}")
        job.record.lifetime = self.retention
        active = ActiveJob(job, fmt, Progress(steps=getattr(job.config, "steps", None)))
        loop = asyncio.get_running_loop()

        def on_step(step: int, steps: int) -> None:  # runs on the engine thread
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody is watching
                loop.call_soon_threadsafe(active.on_step, step, steps)

        job.control.on_step = on_step
        # A record is a few hundred bytes: written on the loop, before the 201 goes out.
        self.store.save(StoredJob(job.record.to_json()))
        self.active[active.id] = active
        active.task = asyncio.create_task(self._run(active), name=f"async-job-{active.id}")
        self._tasks.add(active.task)
        active.task.add_done_callback(self._tasks.discard)
        return self.job_json(active)

    async def _run(self, active: ActiveJob) -> None:
        job_id_var.set(active.id)
        try:
            output = await self._execute(active)
            name = output_name(output.format)
            await asyncio.to_thread(self.store.write_output, active.id, name, output.data)
            self._finish(active, outputs=[name])
        except asyncio.CancelledError:
            self._finish(active, error=SHUT_DOWN)  # nothing to do when DELETE finished it
            raise
        except ApiError as exc:
            self._finish(active, error=exc.message)
        except Exception:
            log.exception("async job failed unexpectedly")
            self._finish(active, error="internal server error")

    async def _execute(self, active: ActiveJob) -> Output:
        """Run the job; a local one first waits for a place in the engine queue.

        An accepted job waits rather than fails when other jobs fill the engine queue.
        One job at a time goes through the waiting room (asyncio.Lock is fair), and keeps it
        until it is in the engine queue: decoding its input takes a moment, and the next
        job must not overtake it. The worker offers no signal for a freed place, hence the
        polling.
        """
        if active.job.job_type.backend != "local":
            return await self.service.execute(active.job, active.fmt)
        worker = self.service.worker
        while True:
            async with self._waiting_room:
                while worker.queued >= worker.queue_size:
                    await asyncio.sleep(RETRY_SECONDS)
                run = asyncio.ensure_future(self.service.execute(active.job, active.fmt))
                try:
                    while not run.done() and self._waiting(active):
                        await asyncio.wait({run}, timeout=ENTER_SECONDS)
                except asyncio.CancelledError:
                    run.cancel()
                    raise
            try:
                return await run
            except Overloaded:
                active.job.record.touch("queued")  # a sync job took the place first

    def _finish(self, active: ActiveJob, outputs: list[str] | None = None,
                error: str | None = None) -> None:
        if active.finished:
            return
        active.finished = True
        record = active.job.record
        if error is not None:
            record.fail(error)
        elif record.state != "completed":  # every backend completes it; this keeps disk honest
            record.touch("completed")
        try:
            self.store.save(StoredJob(record.to_json(), outputs or []))
        except OSError:
            log.exception("could not save the async job's record to %s", self.store.root)
        self.active.pop(active.id, None)
        active.notify()
        log.info("async job %s: %s", record.state, error or ", ".join(outputs or []))

    def find(self, job_id: str) -> ActiveJob | StoredJob:
        """The job: in memory while unfinished, else from disk; NotFound (404) if unknown."""
        active = self.active.get(job_id)
        if active is not None:
            return active
        stored = self.store.load(job_id)
        if stored is None or stored.expired():
            raise NotFound(f"no job {job_id!r}: unknown, or past its expires_at")
        return stored

    def job_json(self, found: ActiveJob | StoredJob) -> dict[str, Any]:
        """The job JSON; an unfinished job's state carries its progress."""
        if isinstance(found, StoredJob):
            return found.job
        body = found.job.record.to_json()
        if body["state"]["current"] == "completed":
            # The backend is done but the output is not on disk yet: not finished for readers.
            body["state"]["current"] = "processing"
        body["state"]["progress"] = self._progress(found)
        return body

    def _progress(self, active: ActiveJob) -> dict[str, Any]:
        worker = self.service.worker
        position = worker.position(active.id)
        if position is None and self._waiting(active):
            # Not in the engine queue yet: behind all of it, and behind the async jobs
            # accepted before it that are not in it either (dicts keep insertion order).
            earlier = list(self.active.values())[:list(self.active).index(active.id)]
            position = worker.queued + int(worker.busy) + sum(map(self._waiting, earlier))
        return progress_json(active.progress, position, worker)

    def _waiting(self, active: ActiveJob) -> bool:
        """Whether a local job is still to enter the engine queue (decoding, or no place)."""
        return (active.job.job_type.backend == "local" and not active.progress.step
                and self.service.worker.position(active.id) is None)

    def state_text(self, job_id: str) -> str:
        """job.state.current as the async API words it: processing, processed or failed."""
        found = self.find(job_id)
        return ASYNC_STATES[found.state] if isinstance(found, StoredJob) else "processing"

    def outputs(self, job_id: str) -> list[str]:
        """The output file names (none until the job has completed)."""
        found = self.find(job_id)
        return list(found.outputs) if isinstance(found, StoredJob) else []

    def output_file(self, job_id: str, name: str) -> tuple[Path, str]:
        """(path, media type) of one output file; NotFound when there is no such output."""
        found = self.find(job_id)
        path = self.store.output_path(found, name) if isinstance(found, StoredJob) else None
        if path is None:
            raise NotFound(f"job {job_id!r} has no output {name!r}")
        return path, OUTPUT_TYPES[path.suffix.lstrip(".")]

    def cancel(self, job_id: str) -> dict[str, Any]:
        """Cancel an unfinished job (failed, error "cancelled"); a finished one is unchanged."""
        found = self.find(job_id)
        if isinstance(found, StoredJob):
            return found.job
        found.job.control.cancel.set()
        self._finish(found, error=CANCELLED)
        if found.task is not None and self.service.worker.position(job_id) is None:
            # Not held by the engine worker (which stops it through control.cancel and
            # resolves its future): stop the waiting task itself.
            found.task.cancel()
        log.info("async job %s cancelled", job_id)
        return found.job.record.to_json()

    async def events(self, job_id: str) -> AsyncIterator[dict[str, str]]:
        """Server-sent events: `progress` (job JSON) on every change, then one final
        `processed` or `failed` event with the finished job JSON, and the stream ends."""
        while True:
            try:
                found = self.find(job_id)
            except NotFound:
                return
            if isinstance(found, StoredJob):
                yield {"event": ASYNC_STATES[found.state], "data": json.dumps(found.job)}
                return
            changed = found.changed
            yield {"event": "progress", "data": json.dumps(self.job_json(found))}
            await changed.wait()

    async def _clean_periodically(self) -> None:
        while True:
            try:
                deleted = await asyncio.to_thread(self.store.delete_expired, self.retention,
                                                  set(self.active))
                if deleted:
                    log.info("deleted %d expired async job(s)", deleted)
            except OSError:
                log.exception("cleaning %s failed", self.store.root)
            await asyncio.sleep(self.cleanup_seconds)
