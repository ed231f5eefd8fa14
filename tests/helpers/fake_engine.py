"""A small engine that honours the Engine interface without torch, for HTTP-level tests.

Its image is a deterministic function of (seed, prompt, size, LoRAs applied) and of the
input images, and each step sleeps `step_seconds`, so queueing, cancellation and failures
can be timed. Given `loras` (helpers/fake_loras.py), it has a LoRA folder as the real engine
does.
`hold()` keeps every job that starts from taking its steps until `release()`, so tests can
fill a queue and look at it without racing the engine; `hold_load()` / `release_load()` do
the same for loading, and `fail_load` makes loading fail.
"""

from __future__ import annotations

import hashlib
import threading
import time

from PIL import Image

from helpers.fake_loras import FakeLoras
from pipelines.contract import EditRequest, EditResult, EngineInfo, LoraSwitch, RunControl
from pipelines.errors import Cancelled, EngineFailure, InvalidInput, OutOfMemory
from pipelines.references.plan import plan_inputs


class FakeEngine:
    """Engine double: records what it ran; can be told to fail the next jobs."""

    def __init__(self, step_seconds: float = 0.0, demo: bool = False,
                 loras: FakeLoras | None = None) -> None:
        self.info = EngineInfo(model="fake", device="cpu", dtype="float32", demo=demo)
        self.loras = loras
        self.step_seconds = step_seconds
        self.requests: list[EditRequest] = []
        self.cancelled: list[EditRequest] = []
        self.fail_next: list[Exception] = []
        #: Raised by the held jobs when they are let go (release(fail=...)).
        self._fail_held: Exception | None = None
        self.started = threading.Event()
        self._gate = threading.Event()
        self._gate.set()
        #: Cleared: load() waits until it is set (a model still loading, for as long as
        #: a test needs to look at the server in that state).
        self.load_gate = threading.Event()
        self.load_gate.set()
        self.loaded = False
        self.closed = False
        self.fail_load: Exception | None = None

    def load(self) -> None:
        self.load_gate.wait(timeout=60)
        if self.fail_load is not None:
            raise self.fail_load
        self.loaded = True

    def hold_load(self) -> None:
        """load() waits until release_load()."""
        self.load_gate.clear()

    def release_load(self) -> None:
        """Let a held load() finish."""
        self.load_gate.set()

    def hold(self) -> None:
        """Jobs that start wait (cancellable) before their first step until release()."""
        self._gate.clear()

    def release(self, fail: Exception | None = None) -> None:
        """Let held jobs take their steps; with `fail`, the jobs held now raise it instead
        (a fault on this device, whichever job it had taken)."""
        self._fail_held = fail
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
        # The real engine's plan (torch-free): the same refusals and input sizes as it has.
        inputs = plan_inputs(request.image, request.references, request.reference_method)
        switch = self._switch(request)
        held = not self._gate.is_set()
        while not self._gate.wait(timeout=0.01):  # held: a real engine's long first step
            if control.cancelled:
                break
        if held and self._fail_held is not None:
            raise self._fail_held
        for step in range(request.steps):
            if control.cancelled:
                self.cancelled.append(request)
                raise Cancelled("job cancelled")
            time.sleep(self.step_seconds)
            control.step(step + 1, request.steps)
        elapsed = max(time.perf_counter() - started, 1e-6)
        return EditResult(self._image(request, switch), elapsed, elapsed, request.steps,
                          input_sizes=inputs.sizes, reference_tokens=inputs.tokens,
                          loras=switch)

    def _switch(self, request: EditRequest) -> LoraSwitch | None:
        if self.loras is None:
            if request.loras:
                raise InvalidInput("loras: this server has no LoRA folder (start it with "
                                   "--lora-dir DIR)")
            return None
        return self.loras.switch(request.loras)

    def _image(self, request: EditRequest, switch: LoraSwitch | None) -> Image.Image:
        key = f"{request.seed}|{request.prompt}"
        if switch is not None and switch.applied:  # no LoRA: the image of an engine without
            key += f"|{switch.applied}"
        digest = hashlib.sha256(key.encode()).digest()
        image = Image.new("RGB", (request.width, request.height), tuple(digest[:3]))
        if request.image is not None:
            # Paste each input in a row of corners, so tests can see every input, in its
            # order, reached the engine.
            for index, source in enumerate((request.image, *request.references)):
                image.paste(source.resize((64, 64)), (64 * index, 0))
        return image

    def steady_step_seconds(self) -> float | None:
        return self.step_seconds or None

    def close(self) -> None:
        self.closed = True


__all__ = ["EngineFailure", "FakeEngine", "FakeLoras", "OutOfMemory"]
