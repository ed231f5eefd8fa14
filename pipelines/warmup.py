"""What a warm-up runs: the shapes that leave no compilation for steady state, including
the longest image stream a job may send (references filling their token budget)."""

from __future__ import annotations

import logging

from pipelines.engine_plan import EnginePlan
from pipelines.references import longest_reference_count
from pipelines.shapes import OUTPUT_SIDES, ShapeCase, warmup_plan

log = logging.getLogger(__name__)


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
