"""The one owner of the engine: a bounded queue in front of a single worker thread.

A full queue answers at once (429 with an honest Retry-After); a cancelled job that has not
started is skipped; a running one is interrupted through its RunControl.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal

from pipelines.types import EditRequest, EditResult, Engine, RunControl
from server.errors import ApiError, JobTimeout, NotReady, Overloaded, ShuttingDown
from server.logs import job_id_var
from server.metrics import Metrics

log = logging.getLogger(__name__)

#: A job still running this long after it was told to stop marks the engine stuck (/healthz).
STUCK_SECONDS = 60.0

WorkerState = Literal["starting", "loading", "warming_up", "ready", "failed", "stopping",
                      "stopped"]


@dataclass
class WorkItem:
    """One queued edit and the future its submitter awaits."""

    request: EditRequest
    control: RunControl
    future: asyncio.Future[EditResult]
    job_id: str = ""
    enqueued_at: float = field(default_factory=time.monotonic)
    aborted_at: float | None = None

    def abort(self, error: ApiError) -> None:
        """Fail the job now with `error` and tell the engine to stop it at the next step."""
        self.control.cancel.set()
        self.aborted_at = self.aborted_at or time.monotonic()
        if not self.future.done():
            self.future.set_exception(error)


class EngineWorker:
    """Runs engine jobs one at a time, in order, on a dedicated thread."""

    def __init__(self, engine: Engine, queue_size: int, warmup: bool = True,
                 job_timeout: float | None = None, metrics: Metrics | None = None) -> None:
        self.engine = engine
        self.queue_size = queue_size
        self.warmup = warmup
        self.job_timeout = job_timeout
        self.metrics = metrics
        self.state: WorkerState = "starting"
        self.error: str | None = None
        self.jobs_done = 0
        # Until a job has run, assume 30 steps at the warm-up's pace (or 10 s).
        self.mean_job_seconds = 10.0
        self._queue: asyncio.Queue[WorkItem] = asyncio.Queue(maxsize=queue_size)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="engine")
        self._running: WorkItem | None = None
        self._running_since = 0.0
        self._task: asyncio.Task | None = None

    @property
    def ready(self) -> bool:
        """Whether jobs are accepted."""
        return self.state == "ready"

    @property
    def queued(self) -> int:
        """Jobs waiting (not counting the running one)."""
        return self._queue.qsize()

    @property
    def busy(self) -> bool:
        """Whether a job is running now."""
        return self._running is not None

    def position(self, job_id: str) -> int | None:
        """Jobs ahead of `job_id`: 0 while it runs, None when the worker does not hold it.

        For the async API's progress (issue 5). asyncio.Queue keeps its items in `_queue`, a
        deque, and offers no public way to look inside.
        """
        if self._running is not None and self._running.job_id == job_id:
            return 0
        ahead = 1 if self._running is not None else 0
        for index, item in enumerate(self._queue._queue):  # type: ignore[attr-defined]
            if item.job_id == job_id:
                return ahead + index
        return None

    @property
    def idle(self) -> bool:
        """Whether nothing is queued or running."""
        return self._running is None and self._queue.empty()

    @property
    def stuck(self) -> bool:
        """Whether a job ignored its cancellation for STUCK_SECONDS (the engine is hung)."""
        item = self._running
        return (item is not None and item.aborted_at is not None
                and time.monotonic() - item.aborted_at > STUCK_SECONDS)

    async def start(self) -> None:
        """Load and warm up the engine on the worker thread, then start taking jobs."""
        loop = asyncio.get_running_loop()
        try:
            self.state = "loading"
            await loop.run_in_executor(self._executor, self.engine.load)
            if self.warmup:
                self.state = "warming_up"
                started = time.monotonic()
                await loop.run_in_executor(self._executor, self.engine.warmup)
                self.mean_job_seconds = max(0.1, time.monotonic() - started)
        except Exception as exc:
            self.state, self.error = "failed", f"{type(exc).__name__}: {exc}"
            log.exception("engine failed to start")
            return
        self.state = "ready"
        self._task = asyncio.create_task(self._consume(), name="engine-worker")
        log.info("engine ready: %s", self.engine.info)

    def retry_after(self) -> int:
        """Seconds until a queue slot frees: what is left of the running job."""
        if self._running is None:
            return 1
        left = self.mean_job_seconds - (time.monotonic() - self._running_since)
        return max(1, math.ceil(left))

    def submit(self, item: WorkItem) -> None:
        """Queue a job, or raise Overloaded (queue full) / NotReady."""
        if not self.ready:
            raise NotReady(f"the engine is {self.state.replace('_', ' ')}"
                           + (f": {self.error}" if self.error else ""))
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            raise Overloaded(
                f"the queue is full ({self.queue_size} jobs waiting); retry later",
                retry_after=self.retry_after(),
            ) from None

    async def _consume(self) -> None:
        while True:
            item = await self._queue.get()
            if item.control.cancel.is_set() or item.future.done():
                item.future.cancel()
                continue
            self._running, self._running_since = item, time.monotonic()
            try:
                await self._run(item)
            finally:
                self._running = None

    async def _run(self, item: WorkItem) -> None:
        """Run one job on the engine thread, stopping it at the per-job time limit."""
        loop = asyncio.get_running_loop()
        context = contextvars.copy_context()
        context.run(job_id_var.set, item.job_id)  # the engine's log lines carry the job id
        call = loop.run_in_executor(self._executor, context.run, self.engine.run, item.request,
                                    item.control)
        done, _ = await asyncio.wait({call}, timeout=self.job_timeout)
        if not done:
            log.warning("job %s ran past the %g s time limit; cancelling it", item.job_id,
                        self.job_timeout)
            item.abort(JobTimeout(
                f"the job ran past the per-job time limit of {self.job_timeout:g} s "
                "(job_timeout_seconds) and was cancelled"))
        try:
            # Even after a timeout, wait for the engine to stop: it owns the GPU.
            result = await call
        except Exception as exc:  # the submitter decides what an error means
            if not item.future.done():
                item.future.set_exception(exc)
            return
        self._record(result)
        if not item.future.done():
            item.future.set_result(result)

    def _record(self, result: EditResult) -> None:
        self.jobs_done += 1
        # Exponential moving average: adapts to the job mix without remembering it all.
        self.mean_job_seconds = 0.7 * self.mean_job_seconds + 0.3 * result.elapsed
        if self.metrics is not None and result.steps:
            self.metrics.step_seconds.observe(result.denoise_seconds / result.steps)

    async def drain(self, grace: float) -> bool:
        """Let queued and running jobs finish for up to `grace` seconds.

        Returns True when everything finished; otherwise what is left is cancelled and
        failed with ShuttingDown, and this returns False once the engine has stopped.
        """
        deadline = time.monotonic() + grace
        while not self.idle and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if self.idle:
            return True
        self.abort_all(ShuttingDown(
            f"the server shut down before the job finished (shutdown grace of {grace:g} s)"))
        stop_by = time.monotonic() + STUCK_SECONDS
        while self._running is not None and time.monotonic() < stop_by:
            await asyncio.sleep(0.05)
        return False

    def abort_all(self, error: ApiError) -> None:
        """Fail every queued job and the running one with `error`, cancelling them."""
        while not self._queue.empty():
            self._queue.get_nowait().abort(error)
        if self._running is not None:
            log.warning("cancelling running job %s: %s", self._running.job_id, error.message)
            self._running.abort(error)

    async def stop(self) -> None:
        """Stop taking jobs, cancel what is queued and running, and close the engine."""
        self.state = "stopping"
        self.abort_all(ShuttingDown("the server is shutting down"))
        if self._task is not None:
            self._task.cancel()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self.engine.close)
        self._executor.shutdown(wait=True)
        self.state = "stopped"
