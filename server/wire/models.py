"""The config of the [dev] job type (wire/hosted.py has [pro]/[max]'s; wire/base.py the base
model and its error messages)."""

from __future__ import annotations

from typing import Literal

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from pipelines.contract import DEFAULT_REFERENCE_METHOD, MAX_INPUT_IMAGES, ReferenceMethod
from server.wire.base import MAX_SEED, JobConfig, random_seed
from server.wire.loras import (
    LORAS_DESCRIPTION,
    MAX_LORAS_PER_JOB,
    LoraItem,
    check_unique,
    json_number,
)
from server.wire.ratio import check_ratio, refuse_ratio_with_size, size_for_ratio

#: Output sides of the dev-kontext type: 512–1040 in multiples of 16. The hosted docs say
#: "512–1040 in multiples of 32", which contradicts itself (1040 = 65 × 16); 16 is the
#: model's own unit (one latent token per 16 × 16 pixels), so we accept both readings.
MIN_SIDE, MAX_SIDE, SIDE_UNIT = 512, 1040, 16

StylePreset = Literal[
    "3d-model", "analog-film", "anime", "cinematic", "comic-book", "craft-clay",
    "digital-art", "enhance", "fantasy-art", "isometric", "line-art", "low-poly",
    "neon-punk", "origami", "photographic", "pixel-art", "texture",
]


class DevKontextConfig(JobConfig):
    """Config of `inference.flux-fast.dev-kontext.img2img.v1` (runs on the local GPU)."""

    prompt: str = Field(min_length=3, max_length=4096, description="The edit instruction.")
    style_preset: StylePreset | None = Field(
        None, description="A style applied through a prompt template."
    )
    width: int = Field(1024, ge=MIN_SIDE, le=MAX_SIDE, multiple_of=SIDE_UNIT,
                       description="Output width: 512–1040, a multiple of 16.")
    height: int = Field(1024, ge=MIN_SIDE, le=MAX_SIDE, multiple_of=SIDE_UNIT,
                        description="Output height: 512–1040, a multiple of 16.")
    aspect_ratio: str | None = Field(
        None, description="Instead of width and height (our extension, for the AI SDK's "
        "`generateText`, which can send only this): `W:H` between 21:9 and 9:21; the output "
        "is the size nearest that ratio with about 1024² pixels within the width/height "
        "rules (echoed in width and height).")
    steps: int = Field(30, ge=1, le=50, description="Denoising steps.")
    guidance_scale: float = Field(2.5, ge=1, le=10, description="Distilled guidance scale.")
    seed: int = Field(
        default_factory=random_seed, ge=0, le=MAX_SEED,
        description="Random seed; absent means random, and the seed used is echoed.",
    )
    reference_method: ReferenceMethod = Field(
        DEFAULT_REFERENCE_METHOD,
        description=f"Our extension. A job may send 1 to {MAX_INPUT_IMAGES} `input` images: "
        "the first is edited, the others are references, in order. How references reach the "
        "model: `offset` lays them beside the image at Kontext's reference index (what the "
        "released [dev] weights handle), `index` gives each its own index, `stitch` pastes "
        "all inputs into one image. No effect with one input. See docs/multi-reference.md.",
    )
    progressive: bool = Field(False, description="Write a progressive JPEG when output is JPEG.")
    loras: list[LoraItem] | None = Field(None, max_length=MAX_LORAS_PER_JOB, title="LoRAs",
                                         description=LORAS_DESCRIPTION)

    _unique_loras = field_validator("loras")(check_unique)

    @model_validator(mode="before")
    @classmethod
    def _ratio_or_size(cls, data: object) -> object:
        return refuse_ratio_with_size(data)

    @field_validator("aspect_ratio", mode="before")
    @classmethod
    def _ratio(cls, value: object) -> object:
        return check_ratio(value)

    @model_validator(mode="after")
    def _size_from_ratio(self) -> DevKontextConfig:
        if self.aspect_ratio is not None:
            self.width, self.height = size_for_ratio(self.aspect_ratio, MIN_SIDE, MAX_SIDE,
                                                     SIDE_UNIT)
        return self

    @field_validator("guidance_scale", mode="before")
    @classmethod
    def _int_is_a_number(cls, value: object) -> object:
        return json_number(value)

    def derived_fields(self) -> set[str]:
        """width and height, when aspect_ratio decided them."""
        return {"width", "height"} if self.aspect_ratio is not None else set()


