"""A dev-kontext job's LoRAs on the local engine: checked against the LoRA folder before the
job queues for the engine, and reported in its metrics (docs/loras.md).

The engine checks them again when it switches them in (and only it can find a file whose
shapes do not fit the model); checking here first answers the common mistakes at once, with
the entry's place in `config.loras`, instead of after the jobs ahead in the queue.
"""

from __future__ import annotations

from typing import Any

from pipelines.contract import LoraCatalog, LoraChoice, LoraSwitch
from pipelines.errors import InvalidInput
from server.errors import ValidationFailed
from server.wire.loras import NO_LORA_FOLDER

#: What each LoRA family is, in words.
FAMILY_TITLES = {"kontext-dev": "FLUX.1 (Kontext [dev])", "klein": "FLUX.2 [klein]"}


def check_loras(catalog: LoraCatalog | None, choices: tuple[LoraChoice, ...],
                model: str = "kontext-dev") -> None:
    """Raise ValidationFailed naming the entry unless every LoRA is in the folder, is for
    the job's model family (`model`) and loads.

    Stats the named files (a rescan for an unknown name): call it off the event loop.
    """
    if not choices:
        return
    if catalog is None:
        raise ValidationFailed(NO_LORA_FOLDER, field="config.loras")
    if catalog.problem is not None:
        raise ValidationFailed(catalog.problem, field="config.loras")
    for index, choice in enumerate(choices):
        where = f"config.loras[{index}].name"
        try:
            entry = catalog.entry(choice.name)
        except InvalidInput:
            # Not the engine's message: that one names the folder's path on the server.
            raise ValidationFailed(f"unknown LoRA {choice.name!r}: this server's LoRA folder "
                                   "has no such file (GET /v2/loras lists them)",
                                   field=where) from None
        _check_family(choice.name, entry.family, model, where)
        if not entry.loads:
            raise ValidationFailed(f"LoRA {choice.name!r} cannot be used: {entry.problem}",
                                   field=where)


def _check_family(name: str, family: str, model: str, where: str) -> None:
    """A LoRA of one family is refused on the other; klein LoRAs are recognised, not run."""
    group = "klein" if model.startswith("klein") else "kontext-dev"
    if family != group:
        raise ValidationFailed(
            f"LoRA {name!r} is a {FAMILY_TITLES.get(family, family)} LoRA and this job runs "
            f"on {model} ({FAMILY_TITLES[group]}): a LoRA of one model family does not load "
            "on the other", field=where)
    if group == "klein":
        raise ValidationFailed(f"LoRA {name!r} is a FLUX.2 [klein] LoRA: this server switches "
                               "LoRAs on kontext-dev only", field=where)


def lora_metrics(switch: LoraSwitch) -> dict[str, Any]:
    """`metrics.loras` of a job that named LoRAs: what ran, the switch time, cache use."""
    return {"applied": [{"name": choice.name, "scale": choice.scale}
                        for choice in switch.applied],
            "switch_seconds": round(switch.switch_seconds, 4),
            "cache_hits": switch.cache_hits, "cache_misses": switch.cache_misses}
