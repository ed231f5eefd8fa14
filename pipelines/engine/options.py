"""How one engine is set up: its device, tier and memory mode (or a plan made by hand), its
warm-up, its reference token budget and its LoRA folder. One object, so that a new option
is one field here and not a parameter threaded through every builder."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.contract import DEFAULT_REFERENCE_TOKEN_BUDGET, MAX_LORAS_PER_JOB
from pipelines.levers.plan import EnginePlan, MemoryMode, Tier
from pipelines.loras.manager import DEFAULT_CACHE_BYTES, DEFAULT_MAX_RANK
from pipelines.parallel.options import ContextParallel


@dataclass(frozen=True)
class LoraOptions:
    """The engine's LoRA folder (docs/loras.md) and what its slots and cache may hold."""

    folder: str | Path
    cache_bytes: int = DEFAULT_CACHE_BYTES
    max_rank: int = DEFAULT_MAX_RANK
    #: LoRA slots in the transformer: the most LoRAs one job may use.
    slots: int = MAX_LORAS_PER_JOB


@dataclass(frozen=True)
class EngineOptions:
    """Everything about one KontextEngine except where its weights come from."""

    #: "auto" (CUDA when available), "cpu", "cuda" or "cuda:N".
    device: str = "auto"
    #: The weights are the tiny random demo checkpoint (said in EngineInfo).
    demo: bool = False
    tier: Tier = "exact"
    memory_mode: MemoryMode = "full"
    #: The levers to apply, in place of planning them from tier and memory mode (tests and
    #: benchmarks pin one).
    plan: EnginePlan | None = None
    #: Compile with inductor's max-autotune (plan.MAX_AUTOTUNE): a longer cold compile,
    #: faster kernels; no effect where nothing is compiled (CPU, the capped memory modes).
    max_autotune: bool = False
    #: Size and steps of the warm-up's calibration edit.
    warmup_size: tuple[int, int] = (1024, 1024)
    warmup_steps: int = 2
    #: Tokens all input images of one job may add together (pipelines/references/plan.py).
    reference_token_budget: int = DEFAULT_REFERENCE_TOKEN_BUDGET
    #: None: no LoRA folder, stock behaviour.
    loras: LoraOptions | None = None
    #: Builds the pipeline in place of reading the weights (benchmarks: random weights made
    #: on the device from a seed); it must return components in eval() mode.
    pipeline_factory: Callable[[], Any] | None = None
    #: This engine is one rank of a context-parallel group (pipelines/parallel); None: alone.
    context_parallel: ContextParallel | None = None
