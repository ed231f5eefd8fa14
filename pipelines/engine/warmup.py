"""The tensor shapes our API can send through the transformer, and the warm-up edits that
leave no compilation for steady state.

Every compiled graph is keyed by shapes. The only shape that varies between jobs is the
image-token count: output tokens (width/16 × height/16) plus the reference's tokens, where
the pipeline snaps the reference to one of 17 preferred Kontext resolutions (_auto_resize).
Text tokens are always 512 (T5 pads to max_sequence_length) and the batch is always 1.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pipelines.contract import (
    PREFERRED_KONTEXT_RESOLUTIONS,
    tokens_for,
)
from pipelines.levers.plan import EnginePlan
from pipelines.references.plan import longest_reference_count

log = logging.getLogger(__name__)

#: Output sides our API accepts (server/wire/models.py: 512–1040 in multiples of 16).
OUTPUT_SIDES = tuple(range(512, 1041, 16))
TEXT_TOKENS = 512


@dataclass(frozen=True)
class ShapeCase:
    """One job geometry: output size and the reference size after _auto_resize."""

    width: int
    height: int
    ref_width: int | None
    ref_height: int | None

    @property
    def image_tokens(self) -> int:
        """Tokens in the transformer's image stream (output + reference)."""
        tokens = tokens_for(self.width, self.height)
        if self.ref_width is not None and self.ref_height is not None:
            tokens += tokens_for(self.ref_width, self.ref_height)
        return tokens


@dataclass(frozen=True)
class WarmupPlan:
    """The edits to run before ready, and why they are enough."""

    cases: tuple[ShapeCase, ...]
    reason: str


def all_cases(with_text_only: bool = True) -> list[ShapeCase]:
    """Every (output size, snapped reference size) our API allows, plus no-reference jobs."""
    cases = []
    refs: list[tuple[int | None, int | None]] = list(PREFERRED_KONTEXT_RESOLUTIONS)
    if with_text_only:
        refs.append((None, None))
    for width in OUTPUT_SIDES:
        for height in OUTPUT_SIDES:
            cases += [ShapeCase(width, height, rw, rh) for rw, rh in refs]
    return cases


def warmup_plan(dynamic: bool, cases: list[ShapeCase] | None = None) -> WarmupPlan:
    """Warm-up edits that leave no compilation for steady state.

    Dynamic shapes: the smallest and the largest image-token counts. The first compiles the
    dynamic graph; the second checks that a different size reuses it (dynamo specialises
    sizes 0 and 1 only, and the smallest count here is far above that).
    Static shapes: one warm-up per distinct token count, which is why we compile dynamic.
    """
    cases = cases or all_cases()
    by_tokens: dict[int, ShapeCase] = {}
    for case in cases:
        by_tokens.setdefault(case.image_tokens, case)
    counts = sorted(by_tokens)
    if dynamic:
        chosen = (by_tokens[counts[0]], by_tokens[counts[-1]])
        reason = (f"dynamic shapes: {len(counts)} image-token counts "
                  f"({counts[0]}–{counts[-1]}) share one graph per block")
    else:
        chosen = tuple(by_tokens[n] for n in counts)
        reason = f"static shapes: one graph per image-token count ({len(counts)})"
    return WarmupPlan(cases=chosen, reason=reason)


def warmup_edits(plan: EnginePlan, cases: list[ShapeCase] | None,
                 reference_token_budget: int) -> list[tuple[ShapeCase, int]]:
    """(shape, number of references) of each warm-up edit before the calibration edit.

    `cases` replaces the compile plan's shapes (tests and benchmarks warm up small ones);
    without it a dynamically compiled engine also meets the longest sequence a job can
    send (the largest output plus references filling the budget), compiled and at its
    memory peak, before it is ready. Without compilation nothing is needed here.
    """
    if cases is not None:
        return [(case, 0) for case in cases]
    if plan.compile is None:
        return []
    chosen = warmup_plan(plan.compile.dynamic)
    log.info("warm-up plan: %s", chosen.reason)
    edits = [(case, 0) for case in chosen.cases]
    if plan.compile.dynamic:
        side = OUTPUT_SIDES[-1]
        edits.append((ShapeCase(side, side, side, side),
                      longest_reference_count(side, reference_token_budget)))
    return edits
