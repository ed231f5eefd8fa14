"""An engine (the real one, wrapped) whose jobs can be held after their first step.

A test clears `release`, starts a job, watches it at step 1 (progress, cancel) with no race
against the job finishing, then sets `release`. Every other call goes to the wrapped engine.
"""

from __future__ import annotations

import threading

from pipelines.contract import EditRequest, EditResult, EngineEvent, RunControl


class HeldEngine:
    """Wraps an engine; while `release` is clear, a job waits after its first step."""

    def __init__(self, engine) -> None:
        self.engine = engine
        self.release = threading.Event()
        self.release.set()
        self.steps_after_hold: list[int] = []

    def __getattr__(self, name: str):
        return getattr(self.engine, name)

    def run(self, request: EditRequest, control: RunControl) -> EditResult:
        held = not self.release.is_set()

        def hold(event: EngineEvent) -> None:
            control.send(event)
            if event.kind != "step":
                return
            if held and event.step > 1:
                self.steps_after_hold.append(event.step)
            if event.step == 1:
                self.release.wait(timeout=60)

        return self.engine.run(request, RunControl(cancel=control.cancel, emit=hold))
