"""A job from admission to its answer: its prepared request, record, progress and task.

The job service is the only code that moves a job (`start`, `complete`, `fail`); backends
return outcomes and readers (routes, the async store, event streams) only look.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING

from pipelines.contract import EngineEvent, RunControl
from server.errors import ApiError
from server.jobs.progress import Progress
from server.jobs.record import JobRecord
from server.jobs.screening import MODERATION_HEADER

if TYPE_CHECKING:
    from server.jobs.backends.base import Backend, Outcome
    from server.jobs.prepared import PreparedJob

Listener = Callable[["Job"], None]
#: How far down a failed job's chain of exceptions their frames are emptied.
MAX_CHAIN = 16


class Job:
    """One accepted job. Its record follows the state machine of jobs/record.py."""

    def __init__(self, prepared: PreparedJob, backend: Backend, record: JobRecord,
                 client: str | None = None) -> None:
        self.prepared = prepared
        self.backend = backend
        self.record = record
        #: Who it counts against in the lanes (jobs/admission.py).
        self.client = client
        self.progress = Progress(steps=getattr(prepared.config, "steps", None))
        self.control = RunControl()
        self.task: asyncio.Task[None] | None = None
        self.outcome: Outcome | None = None
        self.error: ApiError | None = None
        #: Replaced on every change, so each waiter wakes once per change it has not seen.
        self.changed = asyncio.Event()
        #: Set once the job has its final state (its backend may still be letting go).
        self.ended = asyncio.Event()
        self._listeners: list[Listener] = []

    @property
    def id(self) -> str:
        """The job id."""
        return self.record.id

    @property
    def finished(self) -> bool:
        """Whether the job has its final state (completed or failed)."""
        return self.record.finished

    def listen(self, listener: Listener) -> None:
        """Call `listener(job)` on the loop after every change of state or progress."""
        self._listeners.append(listener)

    def notify(self) -> None:
        """Tell waiters and listeners that something changed."""
        self.changed.set()
        self.changed = asyncio.Event()
        for listener in list(self._listeners):
            listener(self)

    def events(self, started: Callable[[], None]) -> Callable[[EngineEvent], None]:
        """Where the job's engine events go, from whatever thread sends them (the engine's
        for steps, the loop's for the rest), applied on this loop: `started` calls
        `started` (the service moves the job to processing and starts its time limit),
        each `step` advances its progress."""
        loop = asyncio.get_running_loop()

        def apply(event: EngineEvent) -> None:
            self.prepared.trace.engine_event(event)
            if event.kind == "started":
                started()
            elif event.kind == "step":
                self.advance(event.step, event.steps)

        def emit(event: EngineEvent) -> None:
            if _running_loop() is loop:
                apply(event)
            else:
                with contextlib.suppress(RuntimeError):  # the loop closed: nobody watches
                    loop.call_soon_threadsafe(apply, event)

        return emit

    def advance(self, step: int, steps: int) -> None:
        """A denoising step is done (on the loop, from the engine thread's callback)."""
        self.progress.advance(step, steps)
        self.notify()

    def start(self) -> None:
        """The job left its queue and runs now."""
        if self.record.state == "queued":
            self.record.move("processing")
            self.notify()

    def complete(self, outcome: Outcome) -> None:
        """Apply the backend's outcome, once: metrics, price, where it ran, and what the
        content filter cost and flagged."""
        record = self.record
        if record.state == "queued":
            record.move("processing")
        record.metrics = outcome.metrics
        if self.prepared.price:
            record.price = outcome.price
        if outcome.served_by is not None:
            record.extra["served_by"] = outcome.served_by
        self.outcome = self._screened(outcome)
        record.move("completed")
        self.ended.set()
        self.notify()

    def _screened(self, outcome: Outcome) -> Outcome:
        """The filter's findings in the record (`moderation`, `metrics.safety_seconds`) and,
        for a flagged job, in the X-Kontext-Moderation header."""
        screening = self.prepared.screening
        if not screening.active:
            return outcome
        self.record.metrics = {**outcome.metrics, "safety_seconds": screening.metrics()}
        self.record.extra["moderation"] = screening.to_json()
        flagged = screening.header()
        if flagged is None:
            return outcome
        return dataclasses.replace(outcome, headers={**outcome.headers,
                                                     MODERATION_HEADER: flagged})

    def fail(self, error: ApiError) -> None:
        """The job failed with `error`; a job already finished stays as it is."""
        if self.finished:
            return
        self.error = _detached(error)
        self.record.error = error.message
        self.record.move("failed")
        self.ended.set()
        self.notify()


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:  # a thread without a loop (the engine's)
        return None


def _detached(error: ApiError) -> ApiError:
    """`error` without its traceback and the exceptions it was raised from (only its status
    and message are answered), their finished frames emptied. A traceback holds every
    frame the error passed through and their locals (a 50 MB upstream answer, the engine's
    work item with the inputs and this job, which holds the error): cycles that only a
    full garbage collection frees, so failed jobs piled up gigabytes between collections
    (benchmarks/RESULTS.md, "Upstream bombs")."""
    chained: BaseException | None = error
    for _ in range(MAX_CHAIN):
        if chained is None:
            break
        traceback.clear_frames(chained.__traceback__)  # a running frame is left as it is
        chained = chained.__cause__ or chained.__context__
    error.__traceback__ = None
    error.__cause__ = error.__context__ = None
    return error
