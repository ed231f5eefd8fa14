"""The one owner of an engine: a single thread that loads it, warms it up and runs its edits
one at a time, in the order they come.

Admission (how many may wait) is the engine lane's business (jobs/admission.py); this
worker only runs what it is given. A caller that is cancelled sets the job's cancel flag,
and waits until the engine has let go of it, so the device is free when it returns.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal

from pipelines.types import EditRequest, EditResult, Engine, RunControl
from server.errors import NotReady
from server.logs import job_id_var
from server.metrics import Metrics

log = logging.getLogger(__name__)

#: A job still running this long after it was told to stop marks the engine stuck (/healthz).
STUCK_SECONDS = 60.0
#: Until a job has run and the engine offers no estimate: the seconds assumed for one job.
DEFAULT_JOB_SECONDS = 10.0
#: Steps assumed for a job when turning a per-step estimate into a job estimate.
TYPICAL_STEPS = 30

WorkerState = Literal["starting", "loading", "warming_up", "ready", "failed", "stopping",
                      "stopped"]


@dataclass
class WorkItem:
    """One edit waiting for, or running on, the engine."""

    request: EditRequest
    control: RunControl
    future: asyncio.Future[EditResult]
    on_start: Callable[[], None]
    job_id: str = "-"
    started_at: float | None = None
    cancelled_at: float | None = None
    enqueued_at: float = field(default_factory=time.monotonic)


class EngineWorker:
    """Runs engine edits one at a time on a dedicated thread."""

    def __init__(self, engine: Engine, warmup: bool = True, metrics: Metrics | None = None,
                 name: str = "engine") -> None:
        self.engine = engine
        self.warmup = warmup
        self.metrics = metrics
        self.name = name
        self.state: WorkerState = "starting"
        self.error: str | None = None
        self.jobs_done = 0
        self._mean_job_seconds: float | None = None
        self._queue: asyncio.Queue[WorkItem] = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._running: WorkItem | None = None
        self._task: asyncio.Task | None = None

    @property
    def ready(self) -> bool:
        """Whether it takes jobs."""
        return self.state == "ready"

    @property
    def busy(self) -> bool:
        """Whether an edit is running now."""
        return self._running is not None

    @property
    def stuck(self) -> bool:
        """Whether a job ignored its cancellation for STUCK_SECONDS (the engine is hung)."""
        item = self._running
        return (item is not None and item.cancelled_at is not None
                and time.monotonic() - item.cancelled_at > STUCK_SECONDS)

    def unavailable(self) -> NotReady | None:
        """Why it cannot take a job now (loading, failed, stopping), or None."""
        if self.ready:
            return None
        return NotReady(f"the engine is {self.state.replace('_', ' ')}"
                        + (f": {self.error}" if self.error else ""))

    @property
    def mean_job_seconds(self) -> float:
        """Expected seconds of one job: measured jobs, else the engine's steady-state step
        time (warm-up and compilation excluded), else DEFAULT_JOB_SECONDS."""
        if self._mean_job_seconds is not None:
            return self._mean_job_seconds
        per_step = self.engine.steady_step_seconds()
        return per_step * TYPICAL_STEPS if per_step else DEFAULT_JOB_SECONDS

    def seconds_left(self) -> float:
        """What is left of the running edit at the expected pace (0 when idle)."""
        item = self._running
        if item is None or item.started_at is None:
            return 0.0
        return max(0.0, self.mean_job_seconds - (time.monotonic() - item.started_at))

    async def start(self) -> None:
        """Load and warm up the engine on its thread, then start taking edits."""
        loop = asyncio.get_running_loop()
        try:
            self.state = "loading"
            await loop.run_in_executor(self._executor, self.engine.load)
            if self.warmup:
                self.state = "warming_up"
                await loop.run_in_executor(self._executor, self.engine.warmup)
        except Exception as exc:
            self.state, self.error = "failed", f"{type(exc).__name__}: {exc}"
            log.exception("engine failed to start")
            return
        self.state = "ready"
        self._task = asyncio.create_task(self._consume(), name=f"{self.name}-worker")
        log.info("engine ready: %s", self.engine.info)

    async def run(self, request: EditRequest, control: RunControl,
                  on_start: Callable[[], None]) -> EditResult:
        """Run one edit after those already given; `on_start` is called as it starts.

        Cancelling the caller stops the edit (at its next step) and returns once the
        engine has let go of it. Engine errors (pipelines.errors) propagate.
        """
        refusal = self.unavailable()
        if refusal is not None:
            raise refusal
        item = WorkItem(request, control, asyncio.get_running_loop().create_future(),
                        on_start, job_id_var.get())
        self._queue.put_nowait(item)
        try:
            return await asyncio.shield(item.future)
        except asyncio.CancelledError:
            control.cancel.set()
            item.cancelled_at = time.monotonic()
            await asyncio.wait({item.future})
            if not item.future.cancelled():
                item.future.exception()  # retrieved: nobody else will read it
            raise

    async def _consume(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            item = await self._queue.get()
            if item.control.cancel.is_set():
                item.future.cancel()  # cancelled while it waited: never started
                continue
            self._running, item.started_at = item, time.monotonic()
            item.on_start()
            context = contextvars.copy_context()
            context.run(job_id_var.set, item.job_id)  # the engine's log lines carry the id
            try:
                result = await loop.run_in_executor(self._executor, context.run,
                                                    self.engine.run, item.request, item.control)
            except Exception as exc:  # the caller decides what an error means
                if not item.future.done():
                    item.future.set_exception(exc)
            else:
                self._record(result)
                if not item.future.done():
                    item.future.set_result(result)
            finally:
                self._running = None

    def _record(self, result: EditResult) -> None:
        self.jobs_done += 1
        # Exponential moving average: adapts to the job mix without remembering it all.
        previous = self._mean_job_seconds
        self._mean_job_seconds = result.elapsed if previous is None \
            else 0.7 * previous + 0.3 * result.elapsed
        if self.metrics is not None and result.steps:
            self.metrics.step_seconds.observe(result.denoise_seconds / result.steps)
        switch = result.loras
        if self.metrics is not None and switch and switch.cache_hits + switch.cache_misses:
            self.metrics.lora_switch_seconds.observe(switch.switch_seconds)  # it named LoRAs

    async def stop(self) -> None:
        """Stop taking edits, cancel what is waiting, and close the engine."""
        self.state = "stopping"
        while not self._queue.empty():
            item = self._queue.get_nowait()
            item.control.cancel.set()
            item.future.cancel()
        if self._running is not None:
            self._running.control.cancel.set()
        if self._task is not None:
            self._task.cancel()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self.engine.close)
        self._executor.shutdown(wait=True)
        self.state = "stopped"
