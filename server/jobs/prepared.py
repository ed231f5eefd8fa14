"""A job from request to ready: the Submission a route (or a batch runner) read, its config
validated once with everything derived from it (JobSpec), its inputs counted and decoded,
and the PreparedJob a backend runs.

`prepare` is the one place a config is validated: routes, async jobs, both runners of
`kontext batch` and its row validation all go through it, and nothing downstream
re-validates or re-derives (the prompt with its style preset, the LoRA choices, the output
size, the echo).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from pipelines.contract import LoraChoice, nearest_preferred
from server.errors import InvalidInputImage
from server.jobs.screening import Screening
from server.jobs.types import JobType, lookup
from server.media.decode import ImageLimits, decode_input
from server.media.formats import ImageFormat
from server.tracing import NO_TRACE, JobTrace
from server.wire.base import WireModel, parse_model
from server.wire.klein import KleinImg2ImgConfig, KleinTxt2ImgConfig
from server.wire.loras import lora_choices
from server.wire.models import DevKontextConfig
from server.wire.presets import model_prompt
from server.wire.ratio import parse_ratio


@dataclass(frozen=True)
class JobSpec:
    """A validated config and what it decides."""

    job_type: JobType
    config: WireModel
    #: The prompt the model (and the content filter) gets: the style preset applied.
    prompt: str
    #: The LoRAs it names, as the engine takes them.
    loras: tuple[LoraChoice, ...]
    #: The output size when the config decides it ([dev]: width × height; [pro]/[max] on
    #: the local fallback: the preferred size nearest aspect_ratio); None: the input's.
    size: tuple[int, int] | None
    #: The config as the job JSON echoes it: every default filled in, unset left out.
    echo: dict[str, Any]
    #: The config to send for the same job again (`kontext batch --server`): the echo
    #: without the fields another one decided (width and height from aspect_ratio).
    resend: dict[str, Any]


def prepare(type_name: str, config: dict[str, Any]) -> JobSpec:
    """Validate `config` as job type `type_name` (400 naming the field and the rule)."""
    job_type = lookup(type_name)
    model = parse_model(job_type.config_model, config, "config")
    echo = model.model_dump(exclude_none=True)
    derived = model.derived_fields()
    return JobSpec(job_type, model, model_prompt(model),
                   lora_choices(getattr(model, "loras", None)), _size(model), echo,
                   {name: value for name, value in echo.items() if name not in derived})


def _size(config: WireModel) -> tuple[int, int] | None:
    if isinstance(config, (DevKontextConfig, KleinTxt2ImgConfig)):
        return config.width, config.height
    if isinstance(config, KleinImg2ImgConfig):  # absent sides: the first input's
        return (config.width, config.height) if config.width and config.height else None
    ratio = getattr(config, "aspect_ratio", None)
    return nearest_preferred(*parse_ratio(ratio)) if ratio else None


@dataclass(frozen=True)
class PreparedJob:
    """A job ready to run: its id, its spec, its decoded inputs, the format it answers in."""

    id: str
    spec: JobSpec
    inputs: tuple[InputImage, ...]
    output_format: ImageFormat
    #: Whether the client asked for the price (?price=true).
    price: bool = False
    #: The job's passage through the content filter (a no-op when safety is off).
    screening: Screening = field(default_factory=lambda: Screening(None, "-"))
    #: The job's trace (NO_TRACE while tracing is off: server/tracing.py).
    trace: JobTrace = NO_TRACE

    @property
    def job_type(self) -> JobType:
        """The job's type."""
        return self.spec.job_type

    @property
    def config(self) -> WireModel:
        """The validated config."""
        return self.spec.config


@dataclass(frozen=True)
class InputImage:
    """One input image: the bytes as sent, decoded under the contract's rules, its format."""

    data: bytes
    image: Image.Image
    format: ImageFormat


@dataclass(frozen=True)
class Submission:
    """What a client asked for: a job type, its config as sent, input images, the output
    format it wants and whether it asked for the price. `spec`: the config already
    prepared (a batch row, validated when the manifest was read), taken as it is. Who
    asked: `owner`, the owner its job gets (a token's fingerprint, settings/tokens.py), and
    `client`, whom it counts against in the lanes (jobs/admission.py)."""

    type: str
    config: dict[str, Any] = field(default_factory=dict)
    inputs: tuple[bytes, ...] = ()
    output_format: ImageFormat = "jpeg"
    price: bool = False
    spec: JobSpec | None = None
    owner: str | None = None
    client: str | None = None

    @classmethod
    def prepared(cls, spec: JobSpec, inputs: tuple[bytes, ...],
                 output_format: ImageFormat) -> Submission:
        """A submission of a config prepared already."""
        return cls(spec.job_type.name, spec.resend, inputs, output_format, spec=spec)


def require_inputs(job_type: JobType, inputs: tuple[bytes, ...]) -> None:
    """Check the number of distinct input images against what the job type takes."""
    low, high = job_type.min_inputs, job_type.max_inputs
    klein = (job_type.model or "").startswith("klein")
    if len(inputs) < low:
        more = f" (up to {high}: the image to edit, then references)" if high > 1 else ""
        more = f" (up to {high}, every one a reference)" if klein else more
        raise InvalidInputImage(
            f"{job_type.name} needs {low} input image, got {len(inputs) or 'none'}; send it "
            f"as a multipart part named `input`{more}", field="input")
    if len(inputs) > high:
        ones = "one" if len(inputs) == 1 else "ones"
        takes = f"takes at most {high} input images (references)" if klein and high \
            else _takes(high)
        raise InvalidInputImage(f"{job_type.name} {takes}, got {len(inputs)} distinct "
                                f"{ones}", field="input")


def _takes(high: int) -> str:
    """How many images a job type takes at most, in words."""
    if high == 0:
        return "takes no input image"
    if high == 1:
        return "takes 1 input image (only the [dev] and klein job types take references)"
    return f"takes at most {high} input images (the image to edit and {high - 1} references)"


def _decode_all(inputs: tuple[bytes, ...], limits: ImageLimits) -> tuple[InputImage, ...]:
    decoded = []
    for index, data in enumerate(inputs):
        name = "input" if len(inputs) == 1 else f"input[{index}]"
        image, data, fmt = decode_input(data, name, limits)
        decoded.append(InputImage(data, image, fmt))
    return tuple(decoded)


async def decode_inputs(inputs: tuple[bytes, ...], limits: ImageLimits
                        ) -> tuple[InputImage, ...]:
    """Every input decoded under the image rules, off the event loop (400 naming the input)."""
    if not inputs:
        return ()
    return await asyncio.to_thread(_decode_all, inputs, limits)
