"""Plain data passed between the server and the engine."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
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
class LoraEntry:
    """One LoRA file of the engine's LoRA folder, as `GET /v2/loras` reports it.

    `loads` is the header's verdict until the file has been fully loaded once (`verified`);
    after that it is the full load's verdict (shapes checked against this model), until the
    file changes. `problem` says why it does not load.
    """

    name: str
    path: Path
    size_bytes: int
    mtime_ns: int
    layout: str
    rank: int | None
    base_model: str | None
    loads: bool
    problem: str | None = None
    verified: bool = False
    warnings: tuple[str, ...] = ()

    @property
    def version(self) -> tuple[str, int, int]:
        """Identifies this file's contents for the adapter cache: path, size, mtime."""
        return (str(self.path), self.size_bytes, self.mtime_ns)


@dataclass(frozen=True)
class CacheStats:
    """LoRA adapter-cache counters for metrics: totals since the engine started, and the
    current content."""

    hits: int
    misses: int
    evictions: int
    bytes: int
    capacity_bytes: int
    entries: int


class LoraCatalog(Protocol):
    """The LoRA surface the server uses (pipelines/loras/manager.py: LoraManager).

    Every method is thread-safe and torch-free: the server calls them off its event loop,
    outside the engine thread.
    """

    #: Why jobs with LoRAs are refused on this engine (e.g. a memory mode), or None.
    problem: str | None

    def entries(self) -> list[LoraEntry]:
        """Every LoRA in the folder, sorted by name (rescans the folder)."""

    def entry(self, name: str) -> LoraEntry:
        """The LoRA called `name`; InvalidInput when the folder has none by that name."""

    def stats(self) -> CacheStats:
        """Adapter-cache counters."""


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
    #: The LoRA folder and adapter cache; None when the engine has no LoRA folder.
    loras: LoraCatalog | None

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
