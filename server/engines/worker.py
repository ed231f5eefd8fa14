"""The owner of one engine: a thread that loads it, warms it up and runs its edits one at a
time, taking them from the queue its pool shares between devices.

Admission (how many may wait) is the engine lane's business (jobs/admission.py) and the
order of the queue is the pool's (engines/pool.py); a worker only runs what it takes.
When the engine's process dies under a job (DeviceLost), the worker fails that job only,
restarts the engine (load + warm-up) and takes jobs again; meanwhile the others go on.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal

from pipelines.contract import (
    TYPICAL_STEPS,
    EditRequest,
    EditResult,
    MovingAverage,
    RunControl,
)
from pipelines.errors import Cancelled, DeviceLost, EngineError, OutOfMemory
from server.engines.interface import Engine
from server.logs import job_id_var
from server.metrics import Metrics

log = logging.getLogger(__name__)

#: A job still running this long after it was told to stop marks the engine stuck (/healthz).
STUCK_SECONDS = 60.0
#: Until a job has run and the engine offers no estimate: the seconds assumed for one job.
DEFAULT_JOB_SECONDS = 10.0

WorkerState = Literal["starting", "loading", "warming_up", "ready", "restarting", "failed",
                      "stopping", "stopped"]


@dataclass
class WorkItem:
    """One edit waiting for, or running on, an engine."""

    request: EditRequest
    control: RunControl
    future: asyncio.Future[EditResult]
    job_id: str = "-"
    #: The label of the device that took it.
    device: str | None = None
    started_at: float | None = None
    cancelled_at: float | None = None
    enqueued_at: float = field(default_factory=time.monotonic)


class EngineWorker:
    """Runs one engine's edits, one at a time, on a dedicated thread."""

    def __init__(self, engine: Engine, queue: asyncio.Queue[WorkItem], label: str = "engine",
                 warmup: bool = True, metrics: Metrics | None = None,
                 load_lock: threading.Lock | None = None) -> None:
        self.engine = engine
        #: Held while loading, when engines share this process (see EnginePool).
        self.load_lock = load_lock
        self.queue = queue
        self.label = label
        self.warmup = warmup
        self.metrics = metrics
        self.state: WorkerState = "starting"
        self.error: str | None = None
        self.jobs_done = 0
        self.jobs_failed = 0
        self._job_seconds = MovingAverage()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=label)
        self.running: WorkItem | None = None
        self._task: asyncio.Task | None = None

    @property
    def ready(self) -> bool:
        """Whether it takes jobs."""
        return self.state == "ready"

    @property
    def busy(self) -> bool:
        """Whether an edit is running now."""
        return self.running is not None

    @property
    def stuck(self) -> bool:
        """Whether a job ignored its cancellation for STUCK_SECONDS (the engine is hung)."""
        item = self.running
        return (item is not None and item.cancelled_at is not None
                and time.monotonic() - item.cancelled_at > STUCK_SECONDS)

    @property
    def mean_job_seconds(self) -> float | None:
        """Expected seconds of one job: measured jobs, else the engine's steady-state step
        time (warm-up and compilation excluded); None when it knows neither."""
        if self._job_seconds.value is not None:
            return self._job_seconds.value
        per_step = self.engine.steady_step_seconds()
        return per_step * TYPICAL_STEPS if per_step else None

    def seconds_left(self, mean: float) -> float:
        """What is left of the running edit at `mean` seconds a job (0 when idle)."""
        item = self.running
        if item is None or item.started_at is None:
            return 0.0
        return max(0.0, mean - (time.monotonic() - item.started_at))

    def status(self) -> dict[str, object]:
        """This device's entry in /readyz."""
        return {"device": self.label, "state": self.state, "error": self.error,
                "busy": self.busy, "jobs_done": self.jobs_done, "jobs_failed": self.jobs_failed}

    async def start(self) -> None:
        """Load and warm up the engine on its thread, then start taking edits."""
        if await self._bring_up("loading"):
            self._task = asyncio.create_task(self._consume(), name=f"{self.label}-worker")

    async def _bring_up(self, first_state: WorkerState) -> bool:
        loop = asyncio.get_running_loop()
        try:
            self.state = first_state
            await loop.run_in_executor(self._executor, self._load)
            if self.warmup:
                self.state = "warming_up"
                await loop.run_in_executor(self._executor, self.engine.warmup)
        except Exception as exc:
            self.state, self.error = "failed", f"{type(exc).__name__}: {exc}"
            if isinstance(exc, EngineError):  # a reason meant for the operator: one line
                log.error("engine on %s failed to start: %s", self.label, exc)
            else:
                log.exception("engine on %s failed to start", self.label)
            return False
        self.state, self.error = "ready", None
        log.info("engine ready on %s: %s", self.label, self.engine.info)
        return True

    def _load(self) -> None:
        if self.load_lock is None:
            self.engine.load()
            return
        with self.load_lock:
            self.engine.load()

    async def _consume(self) -> None:
        while True:
            item = await self.queue.get()
            if item.control.cancelled:
                item.future.cancel()  # cancelled while it waited: never started
                continue
            lost = await self._run(item)
            del item  # while the next one is awaited: its inputs and its job are not needed
            if lost:
                log.error("the engine on %s was lost; restarting it", self.label)
                if not await self._bring_up("restarting"):
                    return  # failed for good: the other devices take the jobs

    async def _run(self, item: WorkItem) -> bool:
        """Run one item; True when the engine was lost under it (it needs a restart)."""
        loop = asyncio.get_running_loop()
        self.running, item.started_at, item.device = item, time.monotonic(), self.label
        item.control.started(self.label)
        context = contextvars.copy_context()
        context.run(job_id_var.set, item.job_id)  # the engine's log lines carry the id
        try:
            result = await loop.run_in_executor(self._executor, context.run,
                                                self.engine.run, item.request, item.control)
        except asyncio.CancelledError:  # the worker is stopping: nobody will run this item
            if not item.future.done():
                item.future.cancel()
            raise
        except Exception as exc:  # the caller decides what an error means
            self.jobs_failed += 1
            self._count(_outcome_of(exc))
            if not item.future.done():
                item.future.set_exception(exc)
            return isinstance(exc, DeviceLost)
        else:
            self._record(result, item.request.model)
            if not item.future.done():
                item.future.set_result(result)
            return False
        finally:
            self.running = None
            # An engine error's traceback holds this frame, and the item's future holds the
            # error: without this, a cycle keeps the item (its inputs, its job) until a
            # full garbage collection.
            del item

    def _count(self, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.device_jobs.labels(device=self.label, outcome=outcome).inc()

    def _record(self, result: EditResult, model: str) -> None:
        self.jobs_done += 1
        self._count("completed")
        self._job_seconds.add(result.elapsed)
        if self.metrics is not None and result.steps:
            self.metrics.step_seconds.labels(device=self.label, model=model).observe(
                result.denoise_seconds / result.steps)
        switch = result.loras
        if self.metrics is not None and switch and switch.cache_hits + switch.cache_misses:
            self.metrics.lora_switch_seconds.observe(switch.switch_seconds)  # it named LoRAs

    async def stop(self) -> None:
        """Stop taking edits, stop the running one, and close the engine."""
        self.state = "stopping"
        if self.running is not None:
            self.running.control.cancel.set()
        if self._task is not None:
            self._task.cancel()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self.engine.close)
        self._executor.shutdown(wait=True)
        self.state = "stopped"


def _outcome_of(exc: Exception) -> str:
    """The `outcome` label of a job that failed on a device."""
    for kind, name in ((Cancelled, "cancelled"), (DeviceLost, "device_lost"),
                       (OutOfMemory, "out_of_memory")):
        if isinstance(exc, kind):
            return name
    return "failed"
