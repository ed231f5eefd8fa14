"""A small engine that honours the Engine interface without torch, for HTTP-level tests.

Its image is a deterministic function of (seed, prompt, size) and of the input image,
and each step sleeps `step_seconds`, so queueing, cancellation and failures can be timed.
`hold()` keeps every job that starts from taking its steps until `release()`, so tests can
fill a queue and look at it without racing the engine; `hold_load()` / `release_load()` do
the same for loading, and `fail_load` makes loading fail.
"""

from __future__ import annotations

import hashlib
import threading
import time

from PIL import Image

from pipelines.errors import Cancelled, EngineFailure, OutOfMemory
from pipelines.types import EditRequest, EditResult, EngineInfo, RunControl


class FakeEngine:
    """Engine double: records what it ran; can be told to fail the next jobs."""

    def __init__(self, step_seconds: float = 0.0, demo: bool = False,
                 load_seconds: float = 0.0) -> None:
        self.info = EngineInfo(model="fake", device="cpu", dtype="float32", demo=demo)
        self.step_seconds = step_seconds
        self.load_seconds = load_seconds
        self.requests: list[EditRequest] = []
        self.cancelled: list[EditRequest] = []
        self.fail_next: list[Exception] = []
        self.started = threading.Event()
        self._gate = threading.Event()
        self._gate.set()
        self.loaded = False
        self.closed = False
        self.fail_load: Exception | None = None
        self._load_gate = threading.Event()
        self._load_gate.set()

    def load(self) -> None:
        time.sleep(self.load_seconds)
        self._load_gate.wait(timeout=60)
        if self.fail_load is not None:
            raise self.fail_load
        self.loaded = True

    def hold_load(self) -> None:
        """load() waits until release_load()."""
        self._load_gate.clear()

    def release_load(self) -> None:
        """Let a held load() finish."""
        self._load_gate.set()

    def hold(self) -> None:
        """Jobs that start wait (cancellable) before their first step until release()."""
        self._gate.clear()

    def release(self) -> None:
        """Let held jobs take their steps."""
        self._gate.set()

    def warmup(self) -> None:
        self.run(EditRequest("warm-up", None, 512, 512, 1, 2.5, 0), RunControl())
        self.requests.clear()

    def run(self, request: EditRequest, control: RunControl) -> EditResult:
        started = time.perf_counter()
        self.started.set()
        self.requests.append(request)
        if self.fail_next:
            raise self.fail_next.pop(0)
        while not self._gate.wait(timeout=0.01):  # held: a real engine's long first step
            if control.cancel.is_set():
                break
        for step in range(request.steps):
            if control.cancel.is_set():
                self.cancelled.append(request)
                raise Cancelled("job cancelled")
            time.sleep(self.step_seconds)
            if control.on_step is not None:
                control.on_step(step + 1, request.steps)
        elapsed = max(time.perf_counter() - started, 1e-6)
        return EditResult(self._image(request), elapsed, elapsed, request.steps)

    def _image(self, request: EditRequest) -> Image.Image:
        digest = hashlib.sha256(f"{request.seed}|{request.prompt}".encode()).digest()
        image = Image.new("RGB", (request.width, request.height), tuple(digest[:3]))
        if request.image is not None:
            # Paste a corner of the input so tests can see the input reached the engine.
            image.paste(request.image.resize((64, 64)), (0, 0))
        return image

    def close(self) -> None:
        self.closed = True


__all__ = ["EngineFailure", "FakeEngine", "OutOfMemory"]
