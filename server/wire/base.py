"""The base of every config model (strict types, unknown fields refused), the request
body's shape, and turning a model's errors into one clear line naming the field and the rule."""

from __future__ import annotations

import secrets
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from server.errors import ValidationFailed

MAX_SEED = 2**63 - 1
#: Random seeds stay below 2^53 so JavaScript clients read `config.seed` back exactly.
MAX_RANDOM_SEED = 2**53 - 1

def random_seed() -> int:
    """A fresh seed for a job that sent none (echoed back in config.seed)."""
    return secrets.randbelow(MAX_RANDOM_SEED + 1)


class WireModel(BaseModel):
    """Base of every config model: strict types, unknown fields refused."""

    model_config = ConfigDict(extra="forbid", strict=True)

    def derived_fields(self) -> set[str]:
        """Fields another field decided (echoed, but not sent again beside it)."""
        return set()


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
