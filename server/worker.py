"""The one owner of the engine: a bounded queue in front of a single worker thread.

A full queue answers at once (429 with an honest Retry-After); a cancelled job that has not
started is skipped; a running one is interrupted through its RunControl.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal

from pipelines.types import EditRequest, EditResult, Engine, RunControl
from server.errors import NotReady, Overloaded

log = logging.getLogger(__name__)

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


class EngineWorker:
    """Runs engine jobs one at a time, in order, on a dedicated thread."""

    def __init__(self, engine: Engine, queue_size: int, warmup: bool = True) -> None:
        self.engine = engine
        self.queue_size = queue_size
        self.warmup = warmup
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
        loop = asyncio.get_running_loop()
        while True:
            item = await self._queue.get()
            if item.control.cancel.is_set() or item.future.done():
                item.future.cancel()
                continue
            self._running, self._running_since = item, time.monotonic()
            try:
                result = await loop.run_in_executor(
                    self._executor, self.engine.run, item.request, item.control
                )
            except Exception as exc:  # the submitter decides what an error means
                if not item.future.done():
                    item.future.set_exception(exc)
            else:
                self._record(result.elapsed)
                if not item.future.done():
                    item.future.set_result(result)
            finally:
                self._running = None

    def _record(self, seconds: float) -> None:
        self.jobs_done += 1
        # Exponential moving average: adapts to the job mix without remembering it all.
        self.mean_job_seconds = 0.7 * self.mean_job_seconds + 0.3 * seconds

    async def stop(self) -> None:
        """Stop taking jobs, cancel what is queued and running, and close the engine."""
        self.state = "stopping"
        while not self._queue.empty():
            item = self._queue.get_nowait()
            item.control.cancel.set()
            if not item.future.done():
                item.future.set_exception(NotReady("the server is shutting down"))
        if self._running is not None:
            self._running.control.cancel.set()
        if self._task is not None:
            self._task.cancel()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self.engine.close)
        self._executor.shutdown(wait=True)
        self.state = "stopped"
