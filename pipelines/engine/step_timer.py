"""Per-step denoising times of one job, measured where the work runs.

On a GPU the host reaches a step's end long before the GPU does (kernels are queued), so
host timestamps measure queueing, not work: CUDA events are recorded in the stream instead
and read once the job is done (its output was copied to the host, so they have completed).
On CPU the host clock is the work's clock.
"""

from __future__ import annotations

import time

from pipelines.contract import RunControl


class StepTimer:
    """Marks the start of the first transformer call and the end of every step."""

    def __init__(self, cuda: bool) -> None:
        self.cuda = cuda
        self.marks: list = []

    def mark(self, *_args, **_kwargs) -> None:
        """Record a timestamp (usable as a forward pre-hook)."""
        if self.cuda:
            import torch

            event = torch.cuda.Event(enable_timing=True)
            event.record()
            self.marks.append(event)
        else:
            self.marks.append(time.perf_counter())

    def mark_start(self, *_args, **_kwargs) -> None:
        """Forward pre-hook: mark the start of denoising once, at the first call."""
        if not self.marks:
            self.mark()

    def step_seconds(self) -> list[float]:
        """Seconds of each step, in order (empty when no step ended)."""
        if self.cuda and self.marks:
            self.marks[-1].synchronize()
            return [a.elapsed_time(b) / 1000 for a, b in zip(self.marks, self.marks[1:],
                                                             strict=False)]
        return [b - a for a, b in zip(self.marks, self.marks[1:], strict=False)]


def steady_seconds(steps: list[float]) -> float:
    """A job's steady per-step time: the mean without its first step (which pays the first
    call's lazy work: a new shape's kernel selection, a cold cache), or the one step."""
    if not steps:
        return 0.0
    steady = steps[1:] or steps
    return sum(steady) / len(steady)


class StepWatch:
    """One job's `callback_on_step_end`: it times each step, reports it, and sets the
    pipeline's interrupt flag once the job is cancelled (diffusers then skips the steps
    left). The denoising start is marked by a pre-hook on the transformer's first call."""

    def __init__(self, transformer, control: RunControl, steps: int, cuda: bool) -> None:
        self.timer = StepTimer(cuda)
        self.control = control
        self.steps = steps
        self._hook = transformer.register_forward_pre_hook(self.timer.mark_start)

    def __call__(self, pipeline, step: int, timestep, callback_kwargs: dict) -> dict:
        self.timer.mark()
        if self.control.cancelled:
            pipeline._interrupt = True
        else:
            self.control.step(step + 1, self.steps)
        return callback_kwargs

    def close(self) -> None:
        """Remove the pre-hook (the transformer outlives the job)."""
        self._hook.remove()
