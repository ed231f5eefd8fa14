"""Wire models of the hosted-only FLUX.1 Kontext [pro] and [max] job types (contract §5).

They are validated here, locally, before any upstream call: a bad job never costs money.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from server.wire.models import MAX_SEED, WireModel, random_seed

Model = Literal["pro", "max"]
Task = Literal["txt2img", "img2img"]

_RATIO = re.compile(r"^([0-9]{1,5}):([0-9]{1,5})$")
ASPECT_RULE = "must be W:H with positive integers, between 21:9 and 9:21"
#: The hosted [pro]/[max] models are Black Forest Labs' closed weights: neither BFL's API nor
#: the hosted /v2 types built on it take LoRAs (docs/loras.md, "[pro] and [max]").
NO_LORAS_RULE = ("[pro]/[max] take no LoRAs: they run on Black Forest Labs' hosted models, "
                 "whose API has no LoRA parameter; send LoRAs with "
                 "inference.flux-fast.dev-kontext.img2img.v1")


def job_type_name(model: Model, task: Task) -> str:
    """The wire name, e.g. inference.flux-kontext.pro.img2img.v2."""
    return f"inference.flux-kontext.{model}.{task}.v2"


@dataclass(frozen=True)
class HostedKind:
    """Which hosted model and task a pro/max job type name stands for."""

    model: Model
    task: Task


def hosted_kind(name: str) -> HostedKind:
    """The (model, task) of a pro/max job type name."""
    _, _, model, task, _ = name.split(".")
    return HostedKind(model, task)  # type: ignore[arg-type]


def parse_ratio(text: str) -> tuple[int, int]:
    """(W, H) of an aspect ratio that has passed validation."""
    width, _, height = text.partition(":")
    return int(width), int(height)


def _check_ratio(value: object) -> object:
    if not isinstance(value, str):
        return value  # strict str typing reports the type error
    match = _RATIO.match(value.strip())
    if not match or int(match[1]) == 0 or int(match[2]) == 0:
        raise PydanticCustomError("aspect_ratio", ASPECT_RULE)
    width, height = int(match[1]), int(match[2])
    # Integer cross-multiplication: 21:9 itself passes exactly, with no float rounding.
    if width * 9 > height * 21 or height * 9 > width * 21:
        raise PydanticCustomError("aspect_ratio", ASPECT_RULE)
    return value.strip()


class _HostedConfig(WireModel):
    prompt: str = Field(min_length=3, max_length=4096, description="The prompt or edit "
                        "instruction.")
    prompt_upsampling: bool = Field(False, description="Let the model rewrite the prompt "
                                    "into a longer one before generating.")
    seed: int = Field(
        default_factory=random_seed, ge=0, le=MAX_SEED,
        description="Random seed; absent means random, and the seed used is echoed.",
    )

    @model_validator(mode="before")
    @classmethod
    def _no_loras(cls, data: object) -> object:
        # Refused wherever the job would run (upstream or --fallback local): a job means the
        # same everywhere. An empty list asks for nothing and is dropped, never forwarded.
        if not isinstance(data, dict) or "loras" not in data:
            return data
        if data["loras"] in (None, []):
            return {key: value for key, value in data.items() if key != "loras"}
        raise ValidationError.from_exception_data(cls.__name__, [InitErrorDetails(
            type=PydanticCustomError("no_loras", NO_LORAS_RULE), loc=("loras",),
            input=data["loras"])])

    @field_validator("aspect_ratio", mode="before", check_fields=False)
    @classmethod
    def _ratio(cls, value: object) -> object:
        return _check_ratio(value)


class HostedTxt2ImgConfig(_HostedConfig):
    """Config of `inference.flux-kontext.{pro,max}.txt2img.v2` (forwarded upstream)."""

    aspect_ratio: str = Field("1:1", description="Output shape `W:H`, between 21:9 and 9:21.")
    safety_tolerance: int = Field(4, ge=0, le=6, description="Moderation tolerance, 0 (strict)"
                                  " to 6 (permissive).")


class HostedImg2ImgConfig(_HostedConfig):
    """Config of `inference.flux-kontext.{pro,max}.img2img.v2` (forwarded upstream)."""

    aspect_ratio: str | None = Field(
        None, description="Output shape `W:H`, between 21:9 and 9:21; absent: the input's.")
    safety_tolerance: int = Field(2, ge=0, le=2, description="Moderation tolerance, 0 (strict)"
                                  " to 2.")


PRO_TXT2IMG = job_type_name("pro", "txt2img")
PRO_IMG2IMG = job_type_name("pro", "img2img")
MAX_TXT2IMG = job_type_name("max", "txt2img")
MAX_IMG2IMG = job_type_name("max", "img2img")
