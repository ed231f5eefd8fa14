"""What the server sees of the engine, torch-free: the limits the wire checks, the edit it
asks for and the result it gets, the LoRA catalog, and a run's control and events.

Outside its composition root (server/wiring.py, server/engine_build.py) and its CLI, the
server imports only this module and pipelines/errors.py (a lint-imports contract).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from PIL import Image

if TYPE_CHECKING:
    from pipelines.errors import EngineError

#: 8× VAE downsampling then 2×2 patches: one image token per 16×16 pixels.
PIXELS_PER_TOKEN_SIDE = 16


def tokens_for(width: int, height: int) -> int:
    """Image tokens for a width × height image (multiples of 16)."""
    return (width // PIXELS_PER_TOKEN_SIDE) * (height // PIXELS_PER_TOKEN_SIDE)


#: The sizes Kontext was trained at, (width, height) of about 1 MP: a copy of diffusers'
#: PREFERRED_KONTEXT_RESOLUTIONS, so that the server picks a size without importing
#: diffusers (tests/engine/test_resolutions.py checks that it still matches).
PREFERRED_KONTEXT_RESOLUTIONS: tuple[tuple[int, int], ...] = (
    (672, 1568), (688, 1504), (720, 1456), (752, 1392), (800, 1328), (832, 1248),
    (880, 1184), (944, 1104), (1024, 1024), (1104, 944), (1184, 880), (1248, 832),
    (1328, 800), (1392, 752), (1456, 720), (1504, 688), (1568, 672),
)


def nearest_preferred(width: int, height: int) -> tuple[int, int]:
    """The preferred resolution whose aspect ratio is nearest width:height (as
    FluxKontextPipeline's `_auto_resize` picks it: the first of equals)."""
    ratio = width / height
    return min(PREFERRED_KONTEXT_RESOLUTIONS, key=lambda size: abs(size[0] / size[1] - ratio))


#: How references reach the transformer (pipelines/references/plan.py).
ReferenceMethod = Literal["index", "offset", "stitch"]
REFERENCE_METHODS: tuple[ReferenceMethod, ...] = ("index", "offset", "stitch")
#: The method the released FLUX.1 Kontext [dev] weights handle
#: (docs/engine.md, "Multi-reference inputs").
DEFAULT_REFERENCE_METHOD: ReferenceMethod = "offset"
#: The canvas and at most three references.
MAX_INPUT_IMAGES = 4
MAX_REFERENCES = MAX_INPUT_IMAGES - 1
#: Tokens all input images together may add: two 1024² images' worth (2 × 4096).
DEFAULT_REFERENCE_TOKEN_BUDGET = 2 * tokens_for(1024, 1024)
#: The smallest share a reference may get: a 256 × 256 image.
MIN_REFERENCE_TOKENS = tokens_for(256, 256)
#: Tokens of the largest preferred Kontext resolution (800 × 1328): the most a canvas costs
#: (written out; a test checks it against the table).
LARGEST_CANVAS_TOKENS = tokens_for(800, 1328)
MIN_REFERENCE_TOKEN_BUDGET = LARGEST_CANVAS_TOKENS + MAX_REFERENCES * MIN_REFERENCE_TOKENS
#: The hosted API accepts at most three LoRAs per FLUX job.
MAX_LORAS_PER_JOB = 3
#: Steps assumed for a job when turning a per-step estimate into a job estimate (the
#: server's ETA and Retry-After), and the job a step cache's step time is scaled to.
TYPICAL_STEPS = 30
#: Bounds of a LoRA's scale; 1.0 is the strength it was trained at, 0 switches it off.
SCALE_MIN, SCALE_MAX = -2.0, 2.0


# --- Model families --------------------------------------------------------------------


@dataclass(frozen=True)
class ModelFamily:
    """One open model family the engine can serve (`--models`): its name on the command
    line, the model it is, where its weights usually come from and under which licence."""

    name: str
    #: The model's own name (/readyz, job metrics, `served_by`).
    model: str
    #: As people write it (the disclosure marks name it): "FLUX.1 Kontext [dev]".
    title: str
    #: The Hugging Face repo the weights are published in (loaded from the cache only).
    repo: str
    licence: str
    #: Steps a job gets when its config names none (the distilled klein models: 4).
    default_steps: int
    #: Input images one job may send (klein: up to 4 references; Kontext: the canvas and
    #: up to 3 references).
    max_inputs: int = MAX_INPUT_IMAGES


KONTEXT_DEV = "kontext-dev"
KLEIN_4B = "klein-4b"
KLEIN_9B = "klein-9b"
MODEL_FAMILIES: dict[str, ModelFamily] = {
    KONTEXT_DEV: ModelFamily(KONTEXT_DEV, "FLUX.1-Kontext-dev", "FLUX.1 Kontext [dev]",
                             "black-forest-labs/FLUX.1-Kontext-dev",
                             "FLUX.1 [dev] Non-Commercial License", 30),
    KLEIN_4B: ModelFamily(KLEIN_4B, "FLUX.2-klein-4B", "FLUX.2 [klein] 4B",
                          "black-forest-labs/FLUX.2-klein-4B",
                          "Apache-2.0", 4),
    KLEIN_9B: ModelFamily(KLEIN_9B, "FLUX.2-klein-9B", "FLUX.2 [klein] 9B",
                          "black-forest-labs/FLUX.2-klein-9B",
                          "FLUX Non-Commercial License", 4),
}
#: `--models all`: every family (with weights given, or on tiny checkpoints in the demo).
ALL_MODELS = "all"


#: klein's pipeline shrinks an input over this many pixels to it (its shape kept).
KLEIN_MAX_INPUT_AREA = 1024 * 1024


def klein_input_size(width: int, height: int) -> tuple[int, int]:
    """The size Flux2KleinPipeline feeds an input of width × height at: shrunk to at most
    1024² pixels, its shape kept, then cropped down to multiples of 16. It is also a klein
    edit's output size when its config names none (the first input's)."""
    if width * height > KLEIN_MAX_INPUT_AREA:
        scale = (KLEIN_MAX_INPUT_AREA / (width * height)) ** 0.5
        width, height = int(width * scale), int(height * scale)
    side = PIXELS_PER_TOKEN_SIDE
    return width // side * side, height // side * side


def family(name: str) -> ModelFamily:
    """The family called `name`; InvalidInput listing the known ones."""
    from pipelines.errors import InvalidInput

    try:
        return MODEL_FAMILIES[name]
    except KeyError:
        known = ", ".join([*MODEL_FAMILIES, ALL_MODELS])
        raise InvalidInput(f"unknown model {name!r}; known: {known}") from None

@dataclass(frozen=True)
class LoraChoice:
    """One LoRA a job asks for: its name in the LoRA folder and its strength."""

    name: str
    scale: float = 1.0


@dataclass(frozen=True)
class LoraSwitch:
    """How one job's LoRAs were switched in, for job metrics: `applied` is what ran, in slot
    order (by name; zero scales dropped); hits and misses count the adapter cache's use."""

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
    #: The model family it is for, from its header: "kontext-dev" (FLUX.1) or "klein"
    #: (FLUX.2); a LoRA of one family is refused on the other.
    family: str = "kontext-dev"

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
    `reference_method` (pipelines/references/plan.py: "index", "offset" or "stitch").
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
    #: The model family that runs it (MODEL_FAMILIES); klein takes every input image as a
    #: reference (`image` first) and no `image` at all for text to image.
    model: str = KONTEXT_DEV


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
    #: timed with CUDA events on a GPU (pipelines/engine/step_timer.py).
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
    #: The model family it runs (MODEL_FAMILIES).
    family: str = KONTEXT_DEV
    #: With several families on one engine: each one's own info, in serving order.
    models: tuple[EngineInfo, ...] = ()

    def served(self) -> tuple[str, ...]:
        """The model families this engine serves."""
        return tuple(part.family for part in self.models) or (self.family,)

    def part(self, name: str) -> EngineInfo | None:
        """The info of the family called `name`, None when it is not served here."""
        if not self.models:
            return self if name == self.family else None
        return next((part for part in self.models if part.family == name), None)


# --- Run control ----------------------------------------------------------------------


@dataclass(frozen=True)
class EngineEvent:
    """What happens to an edit, as every transport carries it (a thread, a child process, a
    Ray replica): `started` on `where`, each `step` of `steps`, then `done` with its result
    or `failed` with its engine error."""

    kind: Literal["started", "step", "done", "failed"]
    step: int = 0
    steps: int = 0
    where: str | None = None
    result: EditResult | None = None
    error: EngineError | None = None


class CancelSignal:
    """A job's stop signal: set by whoever cancels the job, read by the engine between steps.
    A transport carries it to where the edit runs (`forwarded_to`: a child process's shared
    event, say) when it is set, so nobody polls. `event`: one another process shares."""

    def __init__(self, event: Any = None) -> None:
        self._event = event if event is not None else threading.Event()
        self._lock = threading.Lock()
        self._forwards: list[Callable[[], None]] = []

    def set(self) -> None:
        """Cancel: the engine stops at its next step; every forward is told now."""
        with self._lock:
            self._event.set()
            forwards = list(self._forwards)
        for forward in forwards:
            forward()

    def is_set(self) -> bool:
        """Whether the job was cancelled."""
        return self._event.is_set()

    @contextlib.contextmanager
    def forwarded_to(self, forward: Callable[[], None]) -> Iterator[None]:
        """Call `forward()` if this is set while the block runs (at once if it is already)."""
        with self._lock:
            self._forwards.append(forward)
            already = self._event.is_set()
        if already:
            forward()
        try:
            yield
        finally:
            with self._lock:
                self._forwards.remove(forward)


@dataclass
class RunControl:
    """A job's controls as the engine and every transport see them: its cancel signal and
    where its events go (`emit`, called on whatever thread the edit runs)."""

    cancel: CancelSignal = field(default_factory=CancelSignal)
    emit: Callable[[EngineEvent], None] | None = None

    @property
    def cancelled(self) -> bool:
        """Whether the job was cancelled (the engine stops at its next step)."""
        return self.cancel.is_set()

    def send(self, event: EngineEvent) -> None:
        """Pass `event` on to whoever follows the job."""
        if self.emit is not None:
            self.emit(event)

    def started(self, where: str) -> None:
        """The edit left its queue and runs on `where` (a device or a replica)."""
        self.send(EngineEvent("started", where=where))

    def step(self, done: int, total: int) -> None:
        """A denoising step is done."""
        self.send(EngineEvent("step", step=done, steps=total))


class MovingAverage:
    """An exponential moving average, the newest value weighing `weight`: every running
    estimate (an engine's step time, a device's, a replica's or an upstream's job time)."""

    def __init__(self, first: float | None = None, weight: float = 0.3) -> None:
        #: None until the first value; `first` seeds it (a guess, or a calibration).
        self.value = first
        self.weight = weight

    def add(self, value: float) -> float:
        """Take in a new value; the new average."""
        self.value = value if self.value is None else \
            (1 - self.weight) * self.value + self.weight * value
        return self.value
