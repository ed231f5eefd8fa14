"""The refusals of a context-parallel group, said at startup with the reason (torch-free).

A group runs only what has been shown to run on its split sequence: the exact and fp8
tiers at full memory. The rest is refused here rather than failing (or hanging a
collective) on the first job.
"""

from __future__ import annotations

import json
from pathlib import Path

from pipelines.errors import InvalidInput
from pipelines.parallel.options import MODES

#: FLUX.1 Kontext [dev]'s attention heads (transformer/config.json: num_attention_heads).
REAL_HEADS = 24


def check_group(degree: int, mode: str, heads: int | None, device: str = "cuda") -> None:
    """Refuse a group of `degree` `device`s in `mode` that the model cannot split; `heads`:
    the transformer's attention heads (None: not known here, checked on load)."""
    if mode not in MODES:
        raise InvalidInput(f"context_parallel_mode: {mode!r} is not one of {', '.join(MODES)}")
    if degree < 2:
        raise InvalidInput(f"context_parallel: a group needs at least 2 devices, got {degree}")
    if mode == "ring" and not device.startswith("cuda"):
        raise InvalidInput(
            "context_parallel_mode: ring merges each rank's partial attention by its "
            "log-sum-exp, which diffusers' CPU attention (native) does not return; use "
            "ulysses on CPU (ring needs a CUDA attention backend: cuDNN or flash)")
    # Ulysses hands each rank whole heads after its all-to-all: the heads must divide.
    if mode == "ulysses" and heads is not None and heads % degree:
        raise InvalidInput(
            f"context_parallel: Ulysses splits the transformer's {heads} attention heads "
            f"across the group, and {heads} is not divisible by {degree}; use a group size "
            f"that divides {heads}, or --context-parallel-mode ring")


def check_tier(tier: str, memory_mode: str) -> None:
    """Refuse the tiers and memory modes a group does not run (why, in the message)."""
    if tier == "turbo":
        raise InvalidInput(
            "context_parallel: --tier turbo is not run by a group: its step cache predicts "
            "whole transformer outputs from hooks that sit outside diffusers' sequence split, "
            "which has not been verified on GPUs; use --tier exact or fp8 with groups, or "
            "turbo on independent devices (--context-parallel 1)")
    if memory_mode != "full":
        raise InvalidInput(
            f"context_parallel: --memory-mode {memory_mode} is not run by a group: every rank "
            "holds the whole model (the sequence is split, not the weights), and streaming "
            "weights from CPU memory under the split is not supported; use --memory-mode full")


def transformer_heads(location: str | Path | None) -> int | None:
    """The attention heads in a diffusers-layout folder's transformer/config.json (None when
    the weights are not such a folder: the rank checks again once loaded)."""
    if location is None:
        return None
    config = Path(location).expanduser() / "transformer" / "config.json"
    if not config.is_file():
        return None
    return int(json.loads(config.read_text())["num_attention_heads"])


def group_plan(plan):
    """`plan` (pipelines/levers/plan.EnginePlan) as a group's rank runs it: without the
    levers that bypass or freeze diffusers' sequence split, each said in a note."""
    import dataclasses

    notes = list(plan.notes)
    changes: dict = {}
    if plan.fp8_attention:
        changes["fp8_attention"] = False
        notes.append("fp8 attention is off in a group: its processor does not go through "
                     "diffusers' split attention")
    if plan.cuda_graphs is not None:
        changes["cuda_graphs"] = None
        notes.append("CUDA graphs are off in a group: collectives are not recorded")
    if plan.compile is not None:
        notes.append("in a group, a job whose tokens do not divide by the group size runs "
                     "its blocks uncompiled (dynamo cannot trace diffusers' uneven split)")
    # diffusers refuses to enable parallelism on a backend it cannot split (e.g.
    # _native_efficient, _flash_3): timing one at load would fail the group on its GPU.
    splittable = tuple(name for name in plan.attention_candidates if splits(name))
    if splittable != plan.attention_candidates:
        changes["attention_candidates"] = splittable
        notes.append("attention backends diffusers cannot split are not timed in a group: "
                     + ", ".join(sorted(set(plan.attention_candidates) - set(splittable))))
    return dataclasses.replace(plan, **changes, notes=tuple(notes))


def splits(backend: str) -> bool:
    """Whether diffusers runs attention backend `backend` under context parallelism."""
    from diffusers.models.attention_dispatch import AttentionBackendName, _AttentionBackendRegistry

    return _AttentionBackendRegistry._is_context_parallel_available(AttentionBackendName(backend))
