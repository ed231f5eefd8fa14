"""The ingress's view of the engine replicas: the jobs path's `Engines`, over a Ray Serve
DeploymentHandle. The job service, lanes, backends and routes above it are the ones the
single-machine server runs; only here do jobs cross to another process or machine.

Backpressure: each replica runs one job (max_ongoing_requests=1) and this ingress may have
`max_queued_requests` more waiting in Ray's queue; past that Ray refuses the call
(BackPressureError) and the job is answered 429 with a Retry-After computed here from the
jobs this ingress has running (what is left of the one closest to its end, at the mean job
time the replicas have reported). A replica that dies under a job fails that job with 503
(`device_lost`); Ray Serve replaces the replica, and the next jobs go to the others.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable
from typing import Any

from ray import exceptions as ray_exceptions
from ray.serve.exceptions import BackPressureError

from pipelines.contract import EditRequest, EngineInfo, MovingAverage, RunControl
from pipelines.errors import DeviceLost
from server.engines.interface import Ran, follow, start_eta
from server.engines.worker import DEFAULT_JOB_SECONDS, TYPICAL_STEPS
from server.errors import NotReady, Overloaded

log = logging.getLogger(__name__)

#: Ray's errors for a replica that died or cannot be reached under a call.
REPLICA_LOST = (ray_exceptions.RayActorError, ray_exceptions.ActorUnavailableError)


class RayEngines:
    """Engine replicas behind a DeploymentHandle, as the jobs path's Engines."""

    def __init__(self, handle: Any, info: EngineInfo, capacity: int,
                 status: Callable[[], dict[str, Any]] | None = None) -> None:
        self.handle = handle
        #: What the replicas run: planned from the settings, then what one reports.
        self.info = info
        #: Jobs that can run at once: max replicas × one job each.
        self.capacity = capacity
        self._status = status
        self.state = "starting"
        self.error: str | None = None
        self._running: dict[int, float] = {}
        self._tokens = itertools.count()
        self._job_seconds = MovingAverage()
        #: LoRAs are not switched on Ray replicas yet (docs/scale-out.md): jobs naming
        #: LoRAs are refused with the "no LoRA folder" answer.
        self.loras = None

    @property
    def busy_count(self) -> int:
        """Jobs of this ingress running on a replica now."""
        return len(self._running)

    @property
    def mean_job_seconds(self) -> float:
        """Mean engine time of the jobs the replicas ran for this ingress."""
        return self._job_seconds.value or DEFAULT_JOB_SECONDS

    @property
    def step_seconds(self) -> float:
        """A mean job's share of TYPICAL_STEPS (replicas do not report their step time)."""
        return self.mean_job_seconds / TYPICAL_STEPS

    def unavailable(self) -> NotReady | None:
        """NotReady until a replica has answered (loaded and warmed up)."""
        if self.state == "ready":
            return None
        return NotReady(f"the engine replicas are {self.state}"
                        + (f": {self.error}" if self.error else ""))

    def _left(self) -> list[float]:
        now, mean = time.monotonic(), self.mean_job_seconds
        return [max(0.0, mean - (now - started)) for started in self._running.values()]

    def seconds_until_free(self) -> float:
        """Until this ingress's running job closest to its end is done (a mean job if none)."""
        return min(self._left(), default=self.mean_job_seconds)

    def start_eta(self, ahead: int) -> float:
        """As the local pool's, over the jobs this ingress has running."""
        return start_eta(self._left(), max(0, ahead - self.busy_count), self.mean_job_seconds)

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Ready once a replica answered; the body has Ray Serve's replica states."""
        body: dict[str, Any] = {"state": self.state, "error": self.error}
        if self._status is not None:
            body["replicas"] = self._status()
        return self.unavailable() is None, body

    def health(self) -> tuple[bool, dict[str, Any]]:
        """Alive unless the replicas could not be reached at start (Ray replaces dead ones)."""
        ok = self.state != "failed"
        return ok, {"ok": ok, "state": self.state, "error": self.error}

    async def start(self) -> None:
        """Wait for a replica to answer (Ray queues the call until one is up)."""
        try:
            self.info = await self.handle.info.remote()
        except Exception as exc:
            self.state, self.error = "failed", f"{type(exc).__name__}: {exc}"
            log.exception("the engine replicas did not answer")
            return
        self.state = "ready"

    async def stop(self) -> None:
        """Take no more jobs (Ray Serve stops the replicas themselves)."""
        self.state = "stopping"

    async def run(self, request: EditRequest, control: RunControl) -> Ran:
        """Run one edit on the next free replica; see Engines.run."""
        refusal = self.unavailable()
        if refusal is not None:
            raise refusal
        token, replica = next(self._tokens), "replica:?"
        stream = self.handle.options(stream=True).run.remote(request)
        try:
            async for event in stream:
                if event.kind == "started":
                    replica = event.where or replica
                    self._running[token] = time.monotonic()
                result = follow(event, control)
                if result is not None:
                    self._job_seconds.add(result.elapsed)
                    return Ran(result, replica)
            raise DeviceLost(f"the engine {replica} ended the job without a result")
        except BackPressureError as exc:
            raise Overloaded(f"every engine replica is busy and the queue is full ({exc}); "
                             "retry later", retry_after=round(self.seconds_until_free())
                             ) from exc
        except REPLICA_LOST as exc:
            raise DeviceLost(f"the engine {replica} died while running the job "
                             f"({type(exc).__name__})") from exc
        except asyncio.CancelledError:
            stream.cancel()  # Ray cancels the replica's generator: the edit stops
            raise
        finally:
            self._running.pop(token, None)
