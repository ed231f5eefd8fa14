"""The job service: it owns every job from admission to its answer.

One task per job, created here and cancelled here (client gone, time limit, DELETE,
shutdown) whatever backend runs it. Backends get a prepared job and a handle and return an
outcome; the service applies it to the job once. Admission is the backend's lane: a sync
job is refused at once when it is full (429), an async one waits in line.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta

from server.errors import ApiError, ClientGone, JobFailed, NotReady, ShuttingDown
from server.jobs.admission import Client, Reservation, reserve_in
from server.jobs.backends.base import Backend, JobHandle, Outcome
from server.jobs.job import Job
from server.jobs.prepared import (
    JobSpec,
    PreparedJob,
    Submission,
    decode_inputs,
    prepare,
    require_inputs,
)
from server.jobs.record import JOB_LIFETIME, JobRecord
from server.jobs.screening import ContentScreen, Screening, drop, run_screened
from server.jobs.types import JobType
from server.logs import job_fields, job_id_var
from server.media.decode import ImageLimits
from server.metrics import Metrics
from server.tracing import JobTrace, start_job
from server.wire.base import WireModel

log = logging.getLogger(__name__)

#: Resolves when whoever waits for a job's answer has gone (the client disconnected).
Abandoned = Callable[[], Awaitable[None]]
#: Stores a completed job's output before it is marked completed (async jobs).
Sink = Callable[[Job, Outcome], Awaitable[None]]
#: How long cancelled jobs get to let go of their backend after a drain gave up on them.
LET_GO_SECONDS = 60.0


class JobService:
    """Prepares, admits, runs, cancels and drains jobs on the backends the job types name."""

    def __init__(self, backends: dict[str, Backend], metrics: Metrics,
                 image_limits: ImageLimits, log_prompts: bool = False,
                 screen: ContentScreen | None = None) -> None:
        self.backends = backends
        #: The content filter every job passes (None: safety off).
        self.screen = screen
        self.metrics = metrics
        self.image_limits = image_limits
        self.log_prompts = log_prompts
        self.accepting = True
        #: Every job not yet ended, whatever its backend (for the drain and /metrics).
        self.jobs: dict[str, Job] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}

    @property
    def in_flight(self) -> int:
        """Jobs accepted and not ended."""
        return len(self.jobs)

    def backend_for(self, job_type: JobType) -> Backend:
        """The backend that runs jobs of this type (NotReady if none is configured)."""
        backend = self.backends.get(job_type.backend)
        if backend is None:
            raise NotReady(f"no {job_type.backend} backend is configured for {job_type.name}")
        return backend

    def reserve(self, client: Client = None) -> Reservation:
        """Before a synchronous job's body is read: 429 when every lane a job could need is
        full for `client` (counting places held for bodies still being read), else a place
        held in each lane that has one, which `submit` turns into the job's place."""
        if not self.accepting:
            raise NotReady("the server is shutting down and accepts no new jobs")
        lanes = {id(b.lane): b.lane for b in self.backends.values() if b.lane is not None}
        return reserve_in(list(lanes.values()), client)

    async def submit(self, submission: Submission, job_id: str, *, wait: bool = False,
                     lifetime: timedelta = JOB_LIFETIME, sink: Sink | None = None,
                     reservation: Reservation | None = None) -> Job:
        """Validate, admit and start a job; typed 4xx/429/503 errors before it exists.

        `wait=False` (synchronous jobs): a full lane is a 429 now (a place `reservation`
        holds in it is used instead), and inputs are decoded only once admitted.
        `wait=True` (async jobs): the job waits in line for its place.
        """
        if not self.accepting:
            raise NotReady("the server is shutting down and accepts no new jobs")
        trace = start_job(job_id)
        try:
            prepared, backend = await self._prepare(
                submission, job_id, admit=not wait,
                reservation=reservation or Reservation([], submission.client), trace=trace)
        except BaseException as exc:
            trace.end(exc)
            raise
        record = JobRecord(type=prepared.job_type.name, id=job_id,
                           config=prepared.spec.echo, lifetime=lifetime)
        if prepared.price:  # provisional: the outcome says the final price
            record.price = {"product": prepared.job_type.name, "dollars": 0}
        if backend.notice:
            record.extra["notice"] = backend.notice
        job = Job(prepared, backend, record, submission.client)
        log.info("job accepted", extra=job_fields(record.config, record.type, self.log_prompts))
        self._start(job, admitted=not wait, sink=sink)
        return job

    def prepare(self, submission: Submission) -> JobSpec:
        """The submission's config validated once (or taken as a batch row prepared it),
        and its inputs counted against the job type: 400 naming the field and the rule."""
        spec = submission.spec or prepare(submission.type, submission.config)
        require_inputs(spec.job_type, submission.inputs)
        return spec

    async def _prepare(self, submission: Submission, job_id: str, admit: bool,
                       reservation: Reservation, trace: JobTrace
                       ) -> tuple[PreparedJob, Backend]:
        with trace.phase("admission"):
            spec = self.prepare(submission)
            backend = self.backend_for(spec.job_type)
            trace.annotate(job_type=spec.job_type.name, backend=backend.runs_on)
            refusal = backend.unavailable()
            if refusal is not None:
                raise refusal
            screening = self._screening(job_id, spec.config)
            await screening.prompt(spec.prompt)  # a refused prompt never takes a place
            lane = backend.lane if admit else None
            if lane is not None:
                reservation.admit(lane, job_id)
            reservation.release()
        try:
            with trace.phase("decode", inputs=len(submission.inputs)):
                inputs = await decode_inputs(submission.inputs, self.image_limits)
            prepared = PreparedJob(job_id, spec, inputs, submission.output_format,
                                   submission.price, screening, trace)
            await backend.check(prepared)  # an unknown LoRA (400), nowhere to run (503)
        except BaseException:
            if lane is not None:
                lane.leave(job_id)
            raise
        return prepared, backend

    def _screening(self, job_id: str, config: WireModel) -> Screening:
        return Screening(None, job_id) if self.screen is None \
            else self.screen.screening(job_id, config)

    def _start(self, job: Job, admitted: bool, sink: Sink | None) -> None:
        job.control.emit = job.events(started=lambda: self._started(job))
        self.jobs[job.id] = job
        self.metrics.in_flight.inc()
        job.task = asyncio.create_task(self._run(job, admitted, sink), name=f"job-{job.id}")

    async def _run(self, job: Job, admitted: bool, sink: Sink | None) -> None:
        """The job's one task: wait for admission, run, store, and record how it ended."""
        job_id_var.set(job.id)
        backend, started = job.backend, time.monotonic()
        check = self._check_inputs(job)
        handle = JobHandle(job.control)

        async def admitted_run() -> Outcome:
            job.prepared.trace.waiting()
            if backend.lane is not None and not admitted:
                await backend.lane.enter(job.id, job.client)
            return await backend.run(job.prepared, handle)

        try:
            # The input check overlaps the wait in line too: a refused input leaves the
            # line at once.
            outcome = await run_screened(admitted_run, check, backend.overlaps_input_check)
            if sink is not None:
                await sink(job, outcome)
            job.complete(outcome)
        except asyncio.CancelledError:
            job.fail(ShuttingDown("the server shut down before the job finished"))
        except ApiError as exc:
            job.fail(exc)
        except Exception:
            log.exception("job failed unexpectedly")
            job.fail(JobFailed("internal server error"))
        finally:
            drop(check)
            self._ended(job, started)

    @staticmethod
    def _check_inputs(job: Job) -> asyncio.Future[None] | None:
        """The job's input check, started now; None when there is nothing to check."""
        prepared = job.prepared
        if not prepared.screening.active or not prepared.inputs:
            return None
        images = [image.image for image in prepared.inputs]
        return asyncio.ensure_future(prepared.screening.inputs(images))

    def _started(self, job: Job) -> None:
        """The backend started running the job: it is processing, and its time runs."""
        job.start()
        limit = job.backend.time_limit
        if limit is not None and job.id not in self._timers:
            self._timers[job.id] = asyncio.get_running_loop().call_later(
                limit, self._time_out, job)

    def _time_out(self, job: Job) -> None:
        log.warning("job ran past its %g s time limit; cancelling it", job.backend.time_limit)
        self.cancel(job, job.backend.timed_out())

    def _ended(self, job: Job, started: float) -> None:
        job.control.emit = None  # its closure holds the job: a cycle only a full GC frees
        timer = self._timers.pop(job.id, None)
        if timer is not None:
            timer.cancel()
        if job.backend.lane is not None:
            job.backend.lane.leave(job.id)
        self.jobs.pop(job.id, None)
        self.metrics.in_flight.dec()
        job.prepared.trace.end(job.error)
        outcome = "completed" if job.error is None else job.error.reason
        self.metrics.job_seconds.labels(job_type=job.prepared.job_type.name,
                                        model=job.backend.model_label(job.prepared),
                                        tier=job.backend.label, outcome=outcome
                                        ).observe(time.monotonic() - started)
        level = logging.INFO if job.error is None else job.error.log_level
        log.log(level, "job %s%s", job.record.state,
                f" ({job.error.status} {job.error.reason}): {job.error.message}"
                if job.error else "")

    def cancel(self, job: Job, error: ApiError) -> None:
        """Fail `job` with `error` now and stop it; its backend lets go in its own time."""
        if job.task is None or job.task.done():
            return
        job.fail(error)
        job.task.cancel()

    def cancel_all(self, error: ApiError) -> None:
        """Cancel every job not yet ended with `error`."""
        for job in list(self.jobs.values()):
            self.cancel(job, error)

    async def finish(self, job: Job, abandoned: Abandoned | None = None) -> Job:
        """Wait until `job` has its final state; if `abandoned` resolves first, cancel it.

        It returns as soon as the job's answer is known (a job past its time limit answers
        504 at once, even while a hung device has not let go of it yet).
        """
        ended = asyncio.ensure_future(job.ended.wait())
        watcher = asyncio.ensure_future(abandoned()) if abandoned is not None else None
        try:
            await asyncio.wait({ended} | ({watcher} if watcher else set()),
                               return_when=asyncio.FIRST_COMPLETED)
            if not job.finished:
                log.info("client disconnected; cancelling the job")
                self.cancel(job, ClientGone("the client disconnected; the job was cancelled"))
        finally:
            for waiter in (ended, watcher):
                if waiter is not None:
                    waiter.cancel()
        return job

    async def drain(self, grace: float) -> bool:
        """Take no new job; give those in flight `grace` seconds, then cancel the rest.

        True when every job ended on its own.
        """
        self.accepting = False
        deadline = time.monotonic() + grace
        while self.jobs and (left := deadline - time.monotonic()) > 0:
            await asyncio.wait({job.task for job in self.jobs.values() if job.task},
                               timeout=left)
        if not self.jobs:
            return True
        self.cancel_all(ShuttingDown(
            f"the server shut down before the job finished (shutdown grace of {grace:g} s)"))
        tasks = {job.task for job in self.jobs.values() if job.task}
        if tasks:
            await asyncio.wait(tasks, timeout=LET_GO_SECONDS)
        return False

    async def aclose(self) -> None:
        """Close what the backends hold open (upstream HTTP clients), each once, and the
        content filter's thread."""
        for backend in {id(b): b for b in self.backends.values()}.values():
            await backend.aclose()
        if self.screen is not None:
            self.screen.close()

