"""Pydantic models of the /v2/job wire format, and turning their errors into one clear line."""

from __future__ import annotations

import secrets
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from pipelines.references import DEFAULT_REFERENCE_METHOD, MAX_INPUT_IMAGES, ReferenceMethod
from server.errors import ValidationFailed
from server.wire.loras import (
    LORAS_DESCRIPTION,
    MAX_LORAS_PER_JOB,
    LoraItem,
    check_unique,
    json_number,
)
from server.wire.ratio import check_ratio, refuse_ratio_with_size, size_for_ratio

MAX_SEED = 2**63 - 1
#: Random seeds stay below 2^53 so JavaScript clients read `config.seed` back exactly.
MAX_RANDOM_SEED = 2**53 - 1
#: Output sides of the dev-kontext type: 512–1040 in multiples of 16. The hosted docs say
#: "512–1040 in multiples of 32", which contradicts itself (1040 = 65 × 16); 16 is the
#: model's own unit (one latent token per 16 × 16 pixels), so we accept both readings.
MIN_SIDE, MAX_SIDE, SIDE_UNIT = 512, 1040, 16

StylePreset = Literal[
    "3d-model", "analog-film", "anime", "cinematic", "comic-book", "craft-clay",
    "digital-art", "enhance", "fantasy-art", "isometric", "line-art", "low-poly",
    "neon-punk", "origami", "photographic", "pixel-art", "texture",
]


def random_seed() -> int:
    """A fresh seed for a job that sent none (echoed back in config.seed)."""
    return secrets.randbelow(MAX_RANDOM_SEED + 1)


class WireModel(BaseModel):
    """Base of every config model: strict types, unknown fields refused."""

    model_config = ConfigDict(extra="forbid", strict=True)


class JobBody(WireModel):
    """The request body: a job type and its config."""

    type: str = Field(description="Job type, e.g. inference.flux-fast.dev-kontext.img2img.v1")
    config: dict[str, Any] = Field(default_factory=dict, description="The job type's config.")


class JobConfig(WireModel):
    """Base of every job type's config: the fields any official client may add to any job."""

    include_messages: bool | None = Field(
        None, description="Sent by the AI SDK's language-model path (`generateText`) on every "
        "job, and accepted by the hosted API. Image-only jobs have no messages to include, so "
        "it changes nothing here; accepted and echoed as sent.")


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


def _describe(value: object) -> str:
    text = repr(value) if isinstance(value, str) else str(value).lower() \
        if isinstance(value, bool) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _num(value: object) -> object:
    """10.0 → 10, so bounds read as the contract writes them."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def error_rule(error: dict[str, Any]) -> str:
    """Our wording for one pydantic error: the rule, then what was sent."""
    kind, ctx, value = error["type"], error.get("ctx") or {}, error.get("input")
    if "field" in ctx:  # a model-level rule naming its field: its message stands alone
        return error["msg"]
    got = f", got {_describe(value)}"
    rules = {
        "missing": "is required",
        "extra_forbidden": "unknown field",
        "multiple_of": f"must be a multiple of {_num(ctx.get('multiple_of'))}{got}",
        "greater_than_equal": f"must be at least {_num(ctx.get('ge'))}{got}",
        "less_than_equal": f"must be at most {_num(ctx.get('le'))}{got}",
        "greater_than": f"must be greater than {_num(ctx.get('gt'))}{got}",
        "less_than": f"must be less than {_num(ctx.get('lt'))}{got}",
        "string_too_short": f"must be at least {ctx.get('min_length')} characters, "
        f"got {len(value) if isinstance(value, str) else value}",
        "string_too_long": f"must be at most {ctx.get('max_length')} characters, "
        f"got {len(value) if isinstance(value, str) else value}",
        "literal_error": f"must be one of {ctx.get('expected')}{got}",
        "int_type": f"must be an integer{got}",
        "int_from_float": f"must be an integer{got}",
        "float_type": f"must be a number{got}",
        "string_type": f"must be a string{got}",
        "list_type": f"must be a list{got}",
        "too_long": f"must have at most {ctx.get('max_length')} entries, "
        f"got {ctx.get('actual_length')}",
        "finite_number": f"must be a finite number{got}",
        "lora_duplicate": error["msg"],
        "no_loras": error["msg"],
        "bool_type": f"must be true or false{got}",
        "dict_type": f"must be an object{got}",
        "model_type": f"must be an object{got}",
    }
    return rules.get(kind, f"{error['msg']}{got}")


def field_path(prefix: str, loc: tuple[int | str, ...]) -> str:
    """`config.loras[1].scale` for ("loras", 1, "scale"); empty parts (a union's tag that
    names nothing, wire/loras.py) are left out."""
    path = prefix
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part != "":
            path += f".{part}" if path else part
    return path


def validation_message(exc: ValidationError, prefix: str) -> tuple[str, str]:
    """(field, rule) of the first error, with `prefix` (e.g. "config") before the path."""
    first = exc.errors()[0]
    loc = first["loc"] or ((first.get("ctx") or {}).get("field", ""),)
    return field_path(prefix, loc), error_rule(first)


def parse_model(model: type[WireModel], data: object, prefix: str) -> Any:
    """Validate `data` as `model`, raising ValidationFailed that names the field and rule."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        field, rule = validation_message(exc, prefix)
        raise ValidationFailed(rule, field=field) from exc
