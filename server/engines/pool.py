"""A pool of engines, one per device, fed from one queue: a job runs on the next free device.

Each device has its own worker (engines/worker.py); they all take from the pool's FIFO
queue, so the engine lane in front of it (capacity: queue_size + devices) is the one
bound, and a job waits only while every device is busy. A job that fails on a device
(out of memory, an exception, the device's process dying) fails alone: the device goes on,
or is restarted, and the others are not touched.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from typing import Any

from pipelines.contract import (
    CacheStats,
    EditRequest,
    EngineInfo,
    LoraCatalog,
    LoraEntry,
    RunControl,
)
from server.engines.interface import Engine, Ran, start_eta
from server.engines.worker import DEFAULT_JOB_SECONDS, TYPICAL_STEPS, EngineWorker, WorkItem
from server.errors import NotReady
from server.logs import job_id_var
from server.metrics import Metrics


def device_labels(devices: list[str]) -> list[str]:
    """A distinct name per engine for logs, /readyz and /metrics: `cuda:1` as it is, and
    repeated `cpu` engines numbered `cpu:0`, `cpu:1`."""
    counts = Counter(devices)
    seen: Counter[str] = Counter()
    labels = []
    for device in devices:
        if counts[device] > 1:
            labels.append(f"{device}:{seen[device]}")
            seen[device] += 1
        else:
            labels.append(device)
    return labels



class PooledLoras:
    """The devices' LoRA catalogs as one: the folder is the same for all, each device has
    its own adapter cache (GPU/host memory of its own), so /metrics shows their sum."""

    def __init__(self, catalogs: list[LoraCatalog]) -> None:
        self.catalogs = catalogs
        self.problem = catalogs[0].problem

    def entries(self) -> list[LoraEntry]:
        """Every LoRA in the folder (the first device's scan)."""
        return self.catalogs[0].entries()

    def entry(self, name: str) -> LoraEntry:
        """The LoRA called `name`, or InvalidInput."""
        return self.catalogs[0].entry(name)

    def stats(self) -> CacheStats:
        """Each counter summed over the devices."""
        every = [catalog.stats() for catalog in self.catalogs]
        return CacheStats(**{name: sum(getattr(s, name) for s in every)
                             for name in CacheStats.__dataclass_fields__})


class EnginePool:
    """The local engines: N workers, one queue, readiness per device."""

    def __init__(self, engines: list[Engine], labels: list[str] | None = None,
                 warmup: bool = True, metrics: Metrics | None = None,
                 ready_devices: int | None = None) -> None:
        if not engines:
            raise ValueError("an engine pool needs at least one engine")
        labels = labels or device_labels([engine.info.device for engine in engines])
        self.queue: asyncio.Queue[WorkItem] = asyncio.Queue()
        # diffusers/transformers loading uses process-wide state (meta-device init): two
        # pipelines loading at once in one process fail ("Cannot copy out of meta tensor").
        # Engines in this process load one at a time; engines in child processes at once.
        lock = None if all(hasattr(e, "pid") for e in engines) else threading.Lock()
        self.workers = [EngineWorker(engine, self.queue, label, warmup, metrics, lock)
                        for engine, label in zip(engines, labels, strict=True)]
        self.capacity = len(self.workers)
        #: Devices that must be ready for the pool to take jobs (default: all of them).
        self.ready_devices = min(ready_devices or self.capacity, self.capacity)
        if metrics is not None:
            metrics.watch_devices(self.workers)

    @property
    def info(self) -> EngineInfo:
        """The first device's engine info (every device runs the same model and tier)."""
        return self.workers[0].engine.info

    @property
    def loras(self) -> LoraCatalog | None:
        """The LoRA folder every device switches from; cache counters summed over them."""
        catalogs = [worker.engine.loras for worker in self.workers]
        if catalogs[0] is None:
            return None
        return catalogs[0] if len(catalogs) == 1 else PooledLoras(catalogs)

    @property
    def ready_count(self) -> int:
        """Devices ready for jobs."""
        return sum(worker.ready for worker in self.workers)

    @property
    def busy_count(self) -> int:
        """Jobs running now."""
        return sum(worker.busy for worker in self.workers)

    @property
    def mean_job_seconds(self) -> float:
        """The mean of the devices' job-time estimates (DEFAULT_JOB_SECONDS before any)."""
        known = [m for w in self.workers if (m := w.mean_job_seconds) is not None]
        return sum(known) / len(known) if known else DEFAULT_JOB_SECONDS

    @property
    def step_seconds(self) -> float:
        """The mean of the ready devices' steady-state step times; a mean job's share of
        TYPICAL_STEPS before any device knows its own."""
        known = [s for w in self.workers if w.ready and (s := w.engine.steady_step_seconds())]
        return sum(known) / len(known) if known else self.mean_job_seconds / TYPICAL_STEPS

    def _state(self) -> str:
        states = {worker.state for worker in self.workers}
        return states.pop() if len(states) == 1 else "mixed"

    def unavailable(self) -> NotReady | None:
        """NotReady while fewer than `ready_devices` devices are ready."""
        if self.ready_count >= self.ready_devices:
            return None
        if len(self.workers) == 1:
            worker = self.workers[0]
            return NotReady(f"the engine is {worker.state.replace('_', ' ')}"
                            + (f": {worker.error}" if worker.error else ""))
        states = ", ".join(f"{w.label} {w.state.replace('_', ' ')}" for w in self.workers)
        return NotReady(f"{self.ready_count} of {len(self.workers)} devices are ready "
                        f"({self.ready_devices} needed): {states}")

    def seconds_until_free(self) -> float:
        """Until the first running job ends, when every ready device is busy; else 0."""
        mean = self.mean_job_seconds
        left = [w.seconds_left(w.mean_job_seconds or mean) for w in self.workers if w.ready]
        return min(left, default=mean)

    def start_eta(self, ahead: int) -> float:
        """When a job with `ahead` jobs before it starts, every device taking its share."""
        mean = self.mean_job_seconds
        free_in = [w.seconds_left(w.mean_job_seconds or mean) for w in self.workers if w.ready]
        return start_eta(free_in, max(0, ahead - self.busy_count), mean)

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Ready when `ready_devices` devices are; the body lists every device's state."""
        first = self.workers[0]
        body: dict[str, Any] = {"state": self._state(), "error": first.error}
        if len(self.workers) > 1:
            errors = [f"{w.label}: {w.error}" for w in self.workers if w.error]
            body["error"] = "; ".join(errors) or None
        body["devices"] = [worker.status() for worker in self.workers]
        body["ready_devices"] = {"ready": self.ready_count, "needed": self.ready_devices,
                                 "total": len(self.workers)}
        return self.unavailable() is None, body

    def health(self) -> tuple[bool, dict[str, Any]]:
        """Alive while no device is hung and enough of them have not failed for good."""
        failed = sum(worker.state == "failed" for worker in self.workers)
        stuck = [worker.label for worker in self.workers if worker.stuck]
        ok = not stuck and len(self.workers) - failed >= self.ready_devices
        _ready, body = self.readiness()
        return ok, {"ok": ok, "state": body["state"], "error": body["error"],
                    "stuck": stuck, "devices": body["devices"]}

    async def start(self) -> None:
        """Load and warm up every device at once (each on its own thread or process)."""
        await asyncio.gather(*(worker.start() for worker in self.workers))

    async def run(self, request: EditRequest, control: RunControl) -> Ran:
        """Queue one edit for the next free device; see Engines.run."""
        refusal = self.unavailable()
        if refusal is not None:
            raise refusal
        item = WorkItem(request, control, asyncio.get_running_loop().create_future(),
                        job_id_var.get())
        self.queue.put_nowait(item)
        try:
            result = await asyncio.shield(item.future)
        except asyncio.CancelledError:
            control.cancel.set()
            item.cancelled_at = time.monotonic()
            await asyncio.wait({item.future})
            if not item.future.cancelled():
                item.future.exception()  # retrieved: nobody else will read it
            raise
        return Ran(result, item.device or self.workers[0].label)

    async def stop(self) -> None:
        """Cancel what waits, stop every device and close its engine."""
        while not self.queue.empty():
            item = self.queue.get_nowait()
            item.control.cancel.set()
            item.future.cancel()
        await asyncio.gather(*(worker.stop() for worker in self.workers))
