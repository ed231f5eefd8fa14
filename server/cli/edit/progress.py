"""The progress of one edit: a tqdm bar over denoising steps on a terminal, plain lines
(one per change) otherwise."""

from __future__ import annotations

import sys
from typing import Any, TextIO

from tqdm import tqdm

from server.cli.batch.progress import is_terminal


class StepProgress:
    """Shows a job's `state.progress` (step, steps, queue_position, eta_seconds)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.bar: tqdm | None = None
        self.terminal = is_terminal(self.stream)
        self.last = ""

    def show(self, progress: dict[str, Any]) -> None:
        """Show one progress report (from the job JSON or the local job)."""
        step, steps = progress.get("step") or 0, progress.get("steps") or 0
        ahead = progress.get("queue_position")
        waiting = not step and ahead
        if self.terminal:
            self._bar(step, steps, f"{ahead} job(s) ahead" if waiting else "")
            return
        eta = progress.get("eta_seconds")
        line = (f"queued: {ahead} job(s) ahead" if waiting else f"step {step}/{steps}"
                + (f", about {eta:g} s left" if eta is not None and step else ""))
        if line != self.last:
            print(line, file=self.stream, flush=True)
            self.last = line

    def _bar(self, step: int, steps: int, note: str) -> None:
        if self.bar is None:
            self.bar = tqdm(total=steps or None, unit="step", file=self.stream,
                            dynamic_ncols=True)
        if steps and self.bar.total != steps:
            self.bar.total = steps
        self.bar.n = step
        self.bar.set_postfix_str(note, refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        """Finish the bar."""
        if self.bar is not None:
            self.bar.close()
