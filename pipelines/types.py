"""Plain data passed between the server and the engine."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from PIL import Image

from pipelines.references import DEFAULT_REFERENCE_METHOD

#: Called after every denoising step with (step_done, total_steps).
StepCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class LoraChoice:
    """One LoRA a job asks for: its name in the LoRA folder and its strength."""

    name: str
    scale: float = 1.0


@dataclass(frozen=True)
class LoraSwitch:
    """How one job's LoRAs were switched in (pipelines/loras), for job metrics.

    `applied` is what ran, in slot order (sorted by name; zero scales dropped); hits and
    misses count the job's LoRAs found in / read into the in-memory adapter cache.
    """

    applied: tuple[LoraChoice, ...]
    switch_seconds: float
    cache_hits: int
    cache_misses: int


@dataclass(frozen=True)
class EditRequest:
    """One Kontext edit, already validated and with its style preset applied to the prompt.

    `image` is the canvas (input[0]); `references` are input[1:], at most three, fed by
    `reference_method` (pipelines/references.py: "index", "offset" or "stitch").
    """

    prompt: str
    image: Image.Image | None
    width: int
    height: int
    steps: int
    guidance_scale: float
    seed: int
    references: tuple[Image.Image, ...] = ()
    reference_method: str = DEFAULT_REFERENCE_METHOD
    #: At most three LoRAs from the engine's LoRA folder; order does not matter.
    loras: tuple[LoraChoice, ...] = ()


@dataclass(frozen=True)
class EditResult:
    """What one edit produced, with its timings in seconds."""

    image: Image.Image
    elapsed: float
    denoise_seconds: float
    steps: int
    #: (width, height) each input was fed at, canvas first (for stitch: its tile).
    input_sizes: tuple[tuple[int, int], ...] = ()
    #: Tokens all inputs together added to the transformer's sequence.
    reference_tokens: int = 0
    #: Set when the engine has a LoRA folder (also for jobs without LoRAs: switch time).
    loras: LoraSwitch | None = None
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

    def steady_step_seconds(self) -> float | None:
        """Seconds per denoising step in steady state (warm-up and compilation excluded),
        None until known: the server's Retry-After and ETA start from it."""

    def close(self) -> None:
        """Release the device."""
