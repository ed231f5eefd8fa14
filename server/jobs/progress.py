"""The progress of a job: denoising steps, place in the queue, time left."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any


@dataclass
class Progress:
    """Denoising progress, as the engine reports it (its `step` events)."""

    steps: int | None
    step: int = 0
    first_step_at: float | None = None
    last_step_at: float | None = None

    def advance(self, step: int, steps: int) -> None:
        """Record that `step` of `steps` is done (called on the event loop)."""
        moment = time.monotonic()
        if self.first_step_at is None:
            self.first_step_at = moment
        self.step, self.steps, self.last_step_at = step, steps, moment

    def seconds_left(self, mean_job_seconds: float) -> float:
        """Time left of the running job, at the pace of its steps so far."""
        steps = self.steps or 1
        if self.step >= 2 and self.first_step_at is not None and self.last_step_at is not None:
            # From step 1 on: step 1 also paid the text encoders, which would skew the pace.
            per_step = (self.last_step_at - self.first_step_at) / (self.step - 1)
            since_last = time.monotonic() - self.last_step_at
            return max(0.0, per_step * (steps - self.step) - since_last)
        return mean_job_seconds * (steps - self.step) / steps


def progress_json(progress: Progress, position: int | None, eta: float | None
                  ) -> dict[str, Any]:
    """`state.progress` of the job JSON: step, steps, queue_position, eta_seconds.

    `position` counts the jobs ahead on the engines, running ones included (0: this one
    runs; None: not on the engines); `eta`: seconds until it is done (jobs/work_ahead.py;
    None for jobs that do not run on the engines).
    """
    return {"step": progress.step, "steps": progress.steps, "queue_position": position,
            "eta_seconds": None if eta is None else round(eta, 1)}
