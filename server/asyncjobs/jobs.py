"""Async jobs (POST /v2/job/async): accepted at once, run by the job service, kept on disk.

The job service runs them like every other job (waiting in line for the engine rather
than being refused); this module bounds how many may be unfinished, writes each record and
output to the JobStore, and answers reads: from memory while a job is unfinished (with its
progress), from disk afterwards. Jobs a previous process left unfinished are marked failed
at startup, with the reason; expired ones are deleted by a periodic task.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from server.asyncjobs.quota import ResultsQuota
from server.asyncjobs.store import JobStore, StoredJob
from server.errors import ApiError, NotFound, NotReady, StorageFull
from server.jobs.admission import Client, Lane, Reservation, reserve_in
from server.jobs.progress import progress_json
from server.jobs.work_ahead import WorkAhead
from server.media.formats import file_name, media_type_of_name
from server.settings import Settings
from server.settings.tokens import ANYONE, Caller

if TYPE_CHECKING:
    from server.jobs.backends.base import Outcome
    from server.jobs.job import Job
    from server.jobs.prepared import Submission
    from server.jobs.service import JobService

log = logging.getLogger(__name__)

#: job.state.current of the async API, from the job JSON's state (wire contract §6).
ASYNC_STATES = {"queued": "processing", "processing": "processing",
                "completed": "processed", "failed": "failed"}
CANCELLED = "cancelled"
RESTARTED = ("the server stopped before the job finished (it was found unfinished when the "
             "server started again); submit it again")


class JobCancelled(ApiError):
    """DELETE /v2/job/async/{id}: the client cancelled its job."""

    status, reason = 499, "cancelled"


class AsyncJobs:
    """The async jobs of one server: submit, look up, cancel, stream; start and stop."""

    def __init__(self, service: JobService, settings: Settings,
                 retry_after: Callable[[], float], recover: bool = True) -> None:
        self.service = service
        #: Whether to fail, at start, the jobs a previous process left unfinished (not when
        #: several servers share results_dir: the others' jobs are still running).
        self.recover = recover
        self.store = JobStore(settings.results_dir)
        self.retention = timedelta(seconds=settings.results_retention_seconds)
        self.cleanup_seconds = settings.results_cleanup_seconds
        size = settings.async_queue_size
        self.unfinished = Lane("async", size, retry_after,
                               f"the async queue is full ({size} unfinished jobs); retry later",
                               share=settings.client_share)
        self.quota = ResultsQuota(self.store, settings.results_max_bytes,
                                  settings.results_min_free_bytes, self.retention,
                                  lambda: set(self.active), self.cleanup_seconds)
        self.active: dict[str, Job] = {}
        self._owners: dict[str, str | None] = {}  # of the active jobs
        self._outputs: dict[str, list[str]] = {}
        self._cleanup: asyncio.Task | None = None

    async def start(self) -> None:
        """Fail the jobs a previous process left unfinished; start the expiry cleanup."""
        try:
            left = await asyncio.to_thread(self.store.fail_unfinished, RESTARTED) \
                if self.recover else 0
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
        """Stop the cleanup (the service has ended every job by now)."""
        if self._cleanup is not None:
            self._cleanup.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._cleanup

    async def reserve(self, client: Client = None) -> Reservation:
        """Before a job's body is read: 507 when the results folder is over its quota (after
        deleting expired jobs), 503 while shutting down, 429 when `async_queue_size` jobs are
        unfinished or held for bodies being read (or `client` holds its share of them);
        else a place held for it."""
        if not self.service.accepting:
            raise NotReady("the server is shutting down and accepts no new jobs")
        await self.quota.check()
        return reserve_in([self.unfinished], client)

    async def submit(self, submission: Submission, job_id: str,
                     reservation: Reservation | None = None) -> dict[str, Any]:
        """Accept a job: start it, save its record, return its job JSON.

        Raises what the service raises (400 for a bad input image, 503 while the engine is
        not ready), Overloaded (429) when `async_queue_size` jobs are unfinished, and
        StorageFull (507) when its record cannot be written.
        """
        (reservation or Reservation([], submission.client)).admit(self.unfinished, job_id)
        try:
            job = await self.service.submit(submission, job_id, wait=True,
                                            lifetime=self.retention, sink=self._write_output)
        except BaseException:
            self.unfinished.leave(job_id)
            raise
        self.active[job.id] = job
        self._owners[job.id] = submission.owner
        try:
            # A record is a few hundred bytes: written on the loop, before the 201 goes out.
            self.store.save(StoredJob(job.record.to_json(), owner=submission.owner))
        except OSError as exc:
            self.active.pop(job.id, None)
            self._owners.pop(job.id, None)
            self.unfinished.leave(job.id)
            error = StorageFull(f"the job could not be saved to the results folder: "
                                f"{exc.strerror or exc}")
            self.service.cancel(job, error)
            raise error from exc
        job.listen(self._changed)
        self._changed(job)  # it may have finished already (a refusing backend)
        return self.job_json(job)

    async def _write_output(self, job: Job, outcome: Outcome) -> None:
        """The service's sink: the output is on disk before the job says completed."""
        name = file_name(outcome.format)
        try:
            await asyncio.to_thread(self.store.write_output, job.id, name, outcome.output)
        except OSError as exc:
            raise StorageFull(f"the output could not be saved to the results folder: "
                              f"{exc.strerror or exc}") from exc
        self._outputs[job.id] = [name]

    def _changed(self, job: Job) -> None:
        if not job.finished or self.active.pop(job.id, None) is None:
            return
        self.unfinished.leave(job.id)
        outputs = self._outputs.pop(job.id, [])
        owner = self._owners.pop(job.id, None)
        try:
            self.store.save(StoredJob(job.record.to_json(), outputs, owner))
        except OSError:
            log.exception("could not save the async job's record to %s", self.store.root)
        log.info("async job %s: %s", job.record.state, job.record.error or ", ".join(outputs))

    def find(self, job_id: str, caller: Caller = ANYONE) -> Job | StoredJob:
        """The job: in memory while unfinished, else from disk; NotFound (404) if unknown,
        expired, or not the caller's (the same answer: a stranger learns nothing)."""
        found: Job | StoredJob | None = self.active.get(job_id)
        owner = self._owners.get(job_id)
        if found is None:
            found = self.store.load(job_id)
            owner = found.owner if found is not None else None
        if found is None or (isinstance(found, StoredJob) and found.expired()) \
                or not caller.may_see(owner):
            raise NotFound(f"no job {job_id!r}: unknown, or past its expires_at")
        return found

    def job_json(self, found: Job | StoredJob) -> dict[str, Any]:
        """The job JSON; an unfinished job's state carries its progress."""
        if isinstance(found, StoredJob):
            return found.job
        body = found.record.to_json()
        if not found.finished:
            engines = found.backend.engines  # None: it does not run on the engines
            position = self.position(found) if engines is not None else None
            eta = None
            if engines is not None and position is not None:
                lane = found.backend.lane
                ahead = lane.ids()[:position] if lane is not None else []
                eta = WorkAhead(engines, self.service.jobs).eta(found.id, ahead)
            body["state"]["progress"] = progress_json(found.progress, position, eta)
        return body

    @staticmethod
    def position(job: Job) -> int | None:
        """Jobs ahead of `job` in its backend's line: 0 once it runs."""
        if job.record.state == "processing":
            return 0
        lane = job.backend.lane
        return None if lane is None else lane.position(job.id)

    def state_text(self, job_id: str, caller: Caller = ANYONE) -> str:
        """job.state.current as the async API words it: processing, processed or failed."""
        found = self.find(job_id, caller)
        return ASYNC_STATES[found.state if isinstance(found, StoredJob) else "processing"]

    def outputs(self, job_id: str, caller: Caller = ANYONE) -> list[str]:
        """The output file names (none until the job has completed)."""
        found = self.find(job_id, caller)
        return list(found.outputs) if isinstance(found, StoredJob) else []

    def output_file(self, job_id: str, name: str, caller: Caller = ANYONE
                    ) -> tuple[Path, str]:
        """(path, media type) of one output file; NotFound when there is no such output."""
        found = self.find(job_id, caller)
        path = self.store.output_path(found, name) if isinstance(found, StoredJob) else None
        media = media_type_of_name(name)
        if path is None or media is None:
            raise NotFound(f"job {job_id!r} has no output {name!r}")
        return path, media

    def cancel(self, job_id: str, caller: Caller = ANYONE) -> dict[str, Any]:
        """Cancel an unfinished job (failed, error "cancelled"); a finished one is unchanged."""
        found = self.find(job_id, caller)
        if isinstance(found, StoredJob):
            return found.job
        self.service.cancel(found, JobCancelled(CANCELLED))
        log.info("async job %s cancelled", job_id)
        return found.record.to_json()

    async def events(self, job_id: str, caller: Caller = ANYONE
                     ) -> AsyncIterator[dict[str, str]]:
        """Server-sent events: `progress` (job JSON) on every change, then one final
        `processed` or `failed` event with the finished job JSON, and the stream ends."""
        while True:
            try:
                found = self.find(job_id, caller)
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
