"""The rules a job's LoRA list follows, with the limits of pipelines/contract.py. Torch-free:
the server checks the same limits at the wire (a 400 naming the entry) and the engine
checks them again here as the last line of defence.
"""

from __future__ import annotations

import math

from pipelines.contract import MAX_LORAS_PER_JOB, SCALE_MAX, SCALE_MIN, LoraChoice
from pipelines.errors import InvalidInput


def check_choices(choices: tuple[LoraChoice, ...],
                  max_loras: int = MAX_LORAS_PER_JOB) -> tuple[LoraChoice, ...]:
    """The job's LoRAs in canonical order (by name), or InvalidInput naming the entry and rule.

    Sorting makes order irrelevant down to the bit: LoRA deltas are added to each layer's
    output in slot order, and floating-point addition is not associative.
    """
    if len(choices) > max_loras:
        raise InvalidInput(f"loras: at most {max_loras} LoRAs per job, got {len(choices)}")
    seen: set[str] = set()
    for index, choice in enumerate(choices):
        where = f"loras[{index}]"
        if not isinstance(choice.name, str) or not choice.name.strip():
            raise InvalidInput(f"{where}.name: must be a non-empty LoRA name")
        if choice.name in seen:
            raise InvalidInput(f"{where}.name: {choice.name!r} is listed twice; give it once "
                               "with the scale you want")
        seen.add(choice.name)
        scale = choice.scale
        if isinstance(scale, bool) or not isinstance(scale, int | float) \
                or not math.isfinite(scale) or not SCALE_MIN <= scale <= SCALE_MAX:
            raise InvalidInput(f"{where}.scale: must be a number from {SCALE_MIN:g} to "
                               f"{SCALE_MAX:g}, got {scale!r}")
    return tuple(sorted(choices, key=lambda choice: choice.name))
