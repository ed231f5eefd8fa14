"""Wire models of the hosted-only FLUX.1 Kontext [pro] and [max] job types (contract §5).

They are validated here, locally, before any upstream call: a bad job never costs money.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from server.wire.base import MAX_SEED, JobConfig, random_seed
from server.wire.ratio import check_ratio, ratio_of_size, refuse_ratio_with_size

#: The largest width or height taken as a shape (the AI SDK's own bound for `size`).
MAX_SIZE_SIDE = 1920
#: Our extensions, consumed here (width/height become aspect_ratio): never forwarded.
NOT_FORWARDED = frozenset({"width", "height"})

Model = Literal["pro", "max"]
Task = Literal["txt2img", "img2img"]

#: The hosted [pro]/[max] models are Black Forest Labs' closed weights: neither BFL's API nor
#: the hosted /v2 types built on it take LoRAs (docs/forwarding.md).
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


class _HostedConfig(JobConfig):
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
        return check_ratio(value)


class HostedTxt2ImgConfig(_HostedConfig):
    """Config of `inference.flux-kontext.{pro,max}.txt2img.v2` (forwarded upstream)."""

    aspect_ratio: str = Field("1:1", description="Output shape `W:H`, between 21:9 and 9:21.")
    safety_tolerance: int = Field(4, ge=0, le=6, description="Moderation tolerance, 0 (strict)"
                                  " to 6 (permissive).")
    # What the AI SDK's generateImage sends for its `size` option: a shape, not a size.
    width: int | None = Field(None, ge=1, le=MAX_SIZE_SIDE, description="With height, "
                              "instead of aspect_ratio (our extension, for the AI SDK's "
                              "`size`): the output's shape is width:height, echoed in "
                              "aspect_ratio; the hosted model picks the size.")
    height: int | None = Field(None, ge=1, le=MAX_SIZE_SIDE, description="See width.")

    @model_validator(mode="before")
    @classmethod
    def _ratio_or_size(cls, data: object) -> object:
        return refuse_ratio_with_size(data)

    @model_validator(mode="after")
    def _ratio_from_size(self) -> HostedTxt2ImgConfig:
        ratio = ratio_of_size(self.width, self.height)
        if ratio is not None:
            self.aspect_ratio = ratio
        return self

    def derived_fields(self) -> set[str]:
        """aspect_ratio, when width and height decided it."""
        return {"aspect_ratio"} if self.width is not None else set()


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
