"""Looks inside a loaded engine that only tests need: which levers really took hold.

Kept out of pipelines/: the engine never asks these questions of itself.
"""

from __future__ import annotations

from pipelines.engine.warmup import ShapeCase, all_cases
from pipelines.levers.plan import EnginePlan
from pipelines.levers.step_cache import HOOK_NAME


def lossless(plan: EnginePlan) -> bool:
    """Whether the plan's output is stock bf16 arithmetic (kernel choice aside)."""
    return not (plan.fp8_linears or plan.fp8_weight_storage or plan.step_cache)


def float8_linears(transformer) -> tuple[int, int]:
    """(float8 weights, all linear weights) in the transformer."""
    import torch

    linears = [m for m in transformer.modules() if isinstance(m, torch.nn.Linear)]
    fp8 = [m for m in linears if getattr(m.weight, "qdata", m.weight).dtype
           in (torch.float8_e4m3fn, torch.float8_e5m2)]
    return len(fp8), len(linears)


def computed_forwards(transformer) -> int | None:
    """Transformer forwards the current (or last) job ran under the step cache; None
    without one."""
    registry = getattr(transformer, "_diffusers_hook", None)
    hook = registry.get_hook(HOOK_NAME) if registry is not None else None
    return None if hook is None else hook.computed


def backends_in_use(transformer) -> set[str | None]:
    """The backend names set on the transformer's attention processors (None: the
    process default)."""
    names: set[str | None] = set()
    for module in transformer.modules():
        processor = getattr(module, "processor", None)
        if processor is not None and hasattr(processor, "_attention_backend"):
            backend = processor._attention_backend
            names.add(None if backend is None else str(getattr(backend, "value", backend)))
    return names


def image_token_counts(cases: list[ShapeCase] | None = None) -> list[int]:
    """The distinct image-token counts: one static graph each without dynamic shapes."""
    return sorted({case.image_tokens for case in (cases or all_cases())})
