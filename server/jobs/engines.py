"""What the jobs path needs from "the engines", however many and wherever they run: the
local pool of devices (jobs/engine_pool.py) or engine replicas on Ray Serve (server/ray/).

The local backend, the engine lane, /readyz, /healthz and the async ETA all talk to this
interface, so a server on one GPU, on eight, or in front of a Ray cluster is the same
server above it.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from pipelines.types import EditRequest, EditResult, EngineInfo, LoraCatalog, RunControl
from server.errors import ApiError


@dataclass(frozen=True)
class Ran:
    """An edit's result and the device (or replica) that ran it."""

    result: EditResult
    device: str


class Engines(Protocol):
    """Runs edits on one or more devices and says how they are doing."""

    #: What the engines run (model, dtype, tier, demo), as /readyz and job metrics say.
    info: EngineInfo
    #: Jobs that can run at once (devices, or replicas at most).
    capacity: int

    @property
    def loras(self) -> LoraCatalog | None:
        """The LoRA folder the engines switch LoRAs from (None: no folder)."""

    @property
    def busy_count(self) -> int:
        """Jobs running now."""

    @property
    def mean_job_seconds(self) -> float:
        """Expected seconds of one job (measured, else an estimate)."""

    @property
    def step_seconds(self) -> float:
        """Expected seconds of one denoising step (the engines' steady-state estimate, else
        a mean job's share): the Retry-After and ETA count steps with it."""

    def unavailable(self) -> ApiError | None:
        """Why no job is taken now (loading, failed, stopping), or None."""

    def seconds_until_free(self) -> float:
        """Seconds until a running job ends and frees a place (0 when one is free now)."""

    def start_eta(self, ahead: int) -> float:
        """Seconds until a job with `ahead` jobs before it (running ones included) starts."""

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Whether the engines are ready for jobs, and their part of the /readyz body."""

    def health(self) -> tuple[bool, dict[str, Any]]:
        """Whether the engines are alive (not failed, not hung), and the /healthz body."""

    async def start(self) -> None:
        """Load and warm up (or connect); the server answers /readyz 503 meanwhile."""

    async def stop(self) -> None:
        """Stop taking jobs and release the devices."""

    async def run(self, request: EditRequest, control: RunControl,
                  on_start: Callable[[], None]) -> Ran:
        """Run one edit on the next free device; `on_start` is called as it starts.

        Cancelling the caller stops the edit and returns once the device let go of it.
        Engine errors (pipelines.errors) propagate.
        """


def start_eta(free_in: list[float], queued_ahead: int, mean: float) -> float:
    """When a job starts that has `queued_ahead` queued jobs before it, on devices that
    free up in `free_in` seconds (0: idle), each job taking `mean` seconds: the jobs ahead
    take the earliest free device in turn, and so does this one."""
    if not free_in:
        return mean * (queued_ahead + 1)
    times = list(free_in)
    heapq.heapify(times)
    for _ in range(queued_ahead):
        heapq.heapreplace(times, times[0] + mean)
    return times[0]
