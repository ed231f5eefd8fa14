"""LoRAs on the wire: the `loras` field of the dev-kontext config and the body of
GET /v2/loras (docs/loras.md).

An entry is a name, as the hosted API sends it, or `{"name", "scale"}` (our extension);
the job JSON echoes each entry as it was sent, an object with its scale filled in. Here only
the per-job rules are checked (at most three, no duplicates, scales from -2 to 2: the rules
of pipelines/loras/choices.py); names are checked against the LoRA folder where the folder
is known, before the job queues for the engine (server/jobs/backends/loras.py).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from pipelines.contract import (
    MAX_LORAS_PER_JOB,
    SCALE_MAX,
    SCALE_MIN,
    LoraCatalog,
    LoraChoice,
    LoraEntry,
)

NAME_RULE = ("must be a LoRA name: its path in the LoRA folder without .safetensors "
             "(GET /v2/loras lists them)")
ENTRY_RULE = 'must be a LoRA name or an object {"name", "scale"}'
NO_LORA_FOLDER = ("this server has no LoRA folder: start it with --lora-dir DIR "
                  "(environment: KONTEXT_LORA_DIR)")
LORAS_DESCRIPTION = (
    f"Up to {MAX_LORAS_PER_JOB} LoRAs from this server's LoRA folder (GET /v2/loras lists "
    "them), each a name (as the hosted API takes) or an object {\"name\", \"scale\"} (our "
    f"extension; scale {SCALE_MIN:g} to {SCALE_MAX:g}, default 1). Order does not matter. "
    "Echoed as sent, objects with their scale filled in.")


def json_number(value: object) -> object:
    """An integer as a float: strict mode refuses 1 for a float field, and JSON has one
    number type (bools stay bools, and are refused)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def _not_blank(name: str) -> str:
    if not name.strip():
        raise PydanticCustomError("lora_name", NAME_RULE)
    return name


LoraName = Annotated[str, Field(max_length=1024), AfterValidator(_not_blank)]


class LoraSpec(BaseModel):
    """One LoRA and its strength."""

    # WireModel's rules (server/wire/models.py imports this module, so not its subclass).
    model_config = ConfigDict(extra="forbid", strict=True)

    name: LoraName = Field(description="The LoRA's path in the LoRA folder, without "
                           ".safetensors, e.g. `styles/ghibli`.")
    scale: Annotated[float, BeforeValidator(json_number)] = Field(
        1.0, ge=SCALE_MIN, le=SCALE_MAX, allow_inf_nan=False,
        description="Strength: 1 is what it was trained at, 0 switches it off, negative "
        "inverts it.")


def _entry_kind(value: object) -> str | None:
    # The tags appear in error paths: a bad string reads `config.loras[0].name`, and the
    # object's "" is dropped (wire/models.py: validation_message), giving `loras[0].scale`.
    if isinstance(value, str):
        return "name"
    if isinstance(value, dict | LoraSpec):
        return ""
    return None


LoraItem = Annotated[
    Annotated[LoraName, Tag("name")] | Annotated[LoraSpec, Tag("")],
    Discriminator(_entry_kind, custom_error_type="lora_entry",
                  custom_error_message=ENTRY_RULE),
]


def entry_name(entry: str | LoraSpec) -> str:
    """The LoRA name of one `loras` entry, whichever form it was sent in."""
    return entry if isinstance(entry, str) else entry.name


def check_unique(entries: list[str | LoraSpec] | None) -> list[str | LoraSpec] | None:
    """`entries`, or a validation error at the second mention of a name."""
    seen: dict[str, int] = {}
    for index, entry in enumerate(entries or ()):
        name = entry_name(entry)
        if name in seen:
            # Raised as a ValidationError so that its path names the entry (loras[i].name).
            error = PydanticCustomError(
                "lora_duplicate", "{name} is listed twice (also entry {first}); give it once "
                "with the scale you want", {"name": repr(name), "first": seen[name]})
            raise ValidationError.from_exception_data("loras", [InitErrorDetails(
                type=error, loc=(index, "name"), input=name)])
        seen[name] = index
    return entries


def lora_choices(entries: list[str | LoraSpec] | None) -> tuple[LoraChoice, ...]:
    """The engine's LoRA choices for a validated `loras` list (a name is scale 1)."""
    return tuple(LoraChoice(entry, 1.0) if isinstance(entry, str)
                 else LoraChoice(entry.name, entry.scale) for entry in entries or ())


class LoraInfo(BaseModel):
    """One LoRA file of the folder, as GET /v2/loras lists it."""

    name: str = Field(description="What `config.loras` calls it: its path in the folder, "
                      "without .safetensors.")
    size_bytes: int = Field(description="File size.")
    layout: str = Field(description="Key layout: diffusers, peft, kohya, comfyui, bfl, xlabs; "
                        "or bfl-control, unknown, unreadable (refused).")
    rank: int | None = Field(description="Largest rank stored in the file.")
    base_model: str | None = Field(description="What the file says it was trained on, else "
                                   "what its key layout shows.")
    loads: bool = Field(description="Whether jobs can use it.")
    problem: str | None = Field(description="Why it cannot be used, when it cannot.")
    verified: bool = Field(description="false: `loads` is the header's verdict; true: the "
                           "file was loaded against this model (shapes checked).")
    warnings: list[str] = Field(description="E.g. text-encoder weights that are ignored.")


class LoraListing(BaseModel):
    """The body of GET /v2/loras."""

    enabled: bool = Field(description="Whether jobs with LoRAs run on this server now.")
    problem: str | None = Field(description="Why jobs with LoRAs are refused (no LoRA folder, "
                                "a memory mode without LoRA support), else null.")
    max_per_job: int = Field(MAX_LORAS_PER_JOB, description="Most LoRAs one job may name.")
    scale_min: float = Field(SCALE_MIN, description="Lowest scale.")
    scale_max: float = Field(SCALE_MAX, description="Highest scale.")
    loras: list[LoraInfo] = Field(description="The folder's LoRAs, sorted by name.")


def lora_info(entry: LoraEntry) -> LoraInfo:
    """The listing's view of one folder entry (no server path in it)."""
    fields: dict[str, Any] = {name: getattr(entry, name) for name in LoraInfo.model_fields}
    return LoraInfo(**{**fields, "warnings": list(entry.warnings)})


def lora_listing(catalog: LoraCatalog | None) -> LoraListing:
    """The listing of `catalog` (rescans its folder: call it off the event loop)."""
    if catalog is None:
        return LoraListing(enabled=False, problem=NO_LORA_FOLDER, loras=[])
    entries = catalog.entries()
    problem = catalog.problem
    return LoraListing(enabled=problem is None, problem=problem,
                       loras=[lora_info(entry) for entry in entries])
