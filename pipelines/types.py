"""Plain data passed between the server and the engine."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from PIL import Image

#: Called after every denoising step with (step_done, total_steps).
StepCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class EditRequest:
    """One Kontext edit, already validated and with its style preset applied to the prompt."""

    prompt: str
    image: Image.Image | None
    width: int
    height: int
    steps: int
    guidance_scale: float
    seed: int


@dataclass(frozen=True)
class EditResult:
    """What one edit produced, with its timings in seconds."""

    image: Image.Image
    elapsed: float
    denoise_seconds: float
    steps: int
    #: Steady per-step denoising time of this job: the mean of its steps after the first,
    #: timed with CUDA events on a GPU (pipelines/step_timer.py).
    step_seconds: float = 0.0

    @property
    def ips(self) -> float:
        """Denoising iterations per second."""
        return self.steps / self.denoise_seconds if self.denoise_seconds > 0 else 0.0


@dataclass(frozen=True)
class EngineInfo:
    """What the engine runs, as reported by /readyz and in job metrics."""

    model: str
    device: str
    dtype: str
    demo: bool
    tier: str = "exact"
    extra: dict[str, str] = field(default_factory=dict)


@dataclass
class RunControl:
    """Per-job controls the worker hands to the engine."""

    cancel: threading.Event = field(default_factory=threading.Event)
    on_step: StepCallback | None = None


class Engine(Protocol):
    """The interface the server's worker drives: load → warm up → run … → close."""

    info: EngineInfo

    def load(self) -> None:
        """Load weights onto the device."""

    def warmup(self) -> None:
        """Run one real edit so the first request pays no first-call costs."""

    def run(self, request: EditRequest, control: RunControl) -> EditResult:
        """Run one edit; raise Cancelled if control.cancel is set before it finishes."""

    def close(self) -> None:
        """Release the device."""
