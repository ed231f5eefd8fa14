"""The engine transport protocol, and what the jobs path needs from "the engines".

`Engine` is one engine as a worker drives it, whatever carries its jobs: KontextEngine in
this process, a child process per device (engines/child.py), or a group of processes
forming one engine (engines/group.py). Every transport speaks the contract's run control: a job's
`RunControl` goes in, `EngineEvent`s come out (`started`, each `step`, `done` or `failed`),
and its `CancelSignal` is carried by the transport to wherever the edit runs (`follow`
relays the events that crossed back). A new transport is one more `Engine`; nothing above
the pool changes.

`Engines` is what the jobs path talks to, however many engines and wherever they run: the
local pool of devices (engines/pool.py) or engine replicas on Ray Serve (server/ray/), whose
replicas stream the same events. The local backend, the engine lane, /readyz, /healthz and
the async ETA all talk to it, so a server on one GPU, on eight, or in front of a Ray
cluster is the same server above it.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Any, Protocol

from pipelines.contract import (
    EditRequest,
    EditResult,
    EngineEvent,
    EngineInfo,
    LoraCatalog,
    RunControl,
)
from pipelines.errors import (
    Cancelled,
    DeviceLost,
    EngineError,
    EngineFailure,
    InvalidInput,
    OutOfMemory,
)
from server.errors import ApiError, ClientGone, EngineLost, JobFailed, ValidationFailed


class Engine(Protocol):
    """One engine as its worker drives it: load → warm up → run … → close."""

    info: EngineInfo
    #: The LoRA folder and adapter cache; None when the engine has no LoRA folder.
    loras: LoraCatalog | None

    def load(self) -> None:
        """Load weights onto the device (or start the process that does)."""

    def warmup(self) -> None:
        """Run real edits so the first request pays no first-call costs."""

    def run(self, request: EditRequest, control: RunControl) -> EditResult:
        """Run one edit, sending its step events to `control`; raise Cancelled if its
        cancel signal is set before it finishes. Blocking: the worker's thread calls it."""

    def steady_step_seconds(self) -> float | None:
        """Seconds per denoising step in steady state (warm-up and compilation excluded),
        None until known: the server's Retry-After and ETA start from it."""

    def close(self) -> None:
        """Release the device."""


def follow(event: EngineEvent, control: RunControl) -> EditResult | None:
    """One event that crossed a transport, applied on this side: `started` and `step` go
    on to `control`; `done` is the edit's result; `failed` raises its engine error."""
    if event.kind == "failed":
        raise event.error or EngineFailure("the engine failed without saying why")
    if event.kind == "done":
        return event.result
    control.send(event)
    return None


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

    async def run(self, request: EditRequest, control: RunControl) -> Ran:
        """Run one edit on the next free device; its events (`started` when a device takes
        it, then its steps) go to `control`.

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


def from_engine_error(exc: EngineError) -> ApiError:
    """The one mapping from the engine's domain errors to API errors."""
    if isinstance(exc, Cancelled):
        return ClientGone(str(exc))
    if isinstance(exc, InvalidInput):
        return ValidationFailed(str(exc))
    if isinstance(exc, DeviceLost):
        return EngineLost(f"{exc}; the job was not finished, submit it again")
    if isinstance(exc, OutOfMemory):
        return JobFailed(f"the job ran out of device memory and was stopped: {exc}")
    if isinstance(exc, EngineFailure):
        return JobFailed(f"the job failed while running: {exc}")
    return JobFailed(str(exc))
