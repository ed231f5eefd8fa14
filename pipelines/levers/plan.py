"""Which speed and memory levers an engine applies: a pure function of tier, memory mode,
device and what the machine can do.

Kept free of torch so that it is cheap to test every combination; `detect_capabilities`
is the only part that looks at the machine (lazily).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Literal

from pipelines.errors import InvalidInput

log = logging.getLogger(__name__)

Tier = Literal["exact", "fp8", "turbo"]
MemoryMode = Literal["full", "24gb", "16gb"]
Offload = Literal["none", "group_streamed"]

TIERS: tuple[Tier, ...] = ("exact", "fp8", "turbo")
MEMORY_MODES: tuple[MemoryMode, ...] = ("full", "24gb", "16gb")

#: fp8 tensor-core matmuls (torchao float8) need Ada (8.9) or Hopper (9.0) and newer.
FP8_MIN_CAPABILITY = (8, 9)
#: FlashAttention 3 is Hopper-only.
FA3_CAPABILITY = (9, 0)
#: Steps a turbo job always computes in full, as a fraction of its steps.
TURBO_EXACT_FRACTION = 0.25
#: After the exact steps, one full forward every this many steps; the others are predicted.
#: 3 gives 15 forwards for 30 steps (2× fewer than fp8); see pipelines/levers/step_cache.py.
TURBO_CACHE_INTERVAL = 3
#: "auto": the engine times these diffusers backends at load and keeps the fastest
#: (pipelines/levers/attention.py); FlashAttention 3 joins them when diffusers can use it.
ATTENTION_CANDIDATES = ("_native_cudnn", "_native_flash", "_native_efficient")


@dataclass(frozen=True)
class Capabilities:
    """What this machine offers the levers (all False on a CPU-only machine)."""

    cuda: bool = False
    compute_capability: tuple[int, int] | None = None
    torchao: bool = False
    flash_attn_3: bool = False

    @property
    def fp8(self) -> bool:
        """Whether torchao float8 matmuls can run here."""
        return (self.cuda and self.torchao and self.compute_capability is not None
                and self.compute_capability >= FP8_MIN_CAPABILITY)


@dataclass(frozen=True)
class CompileSpec:
    """Regional torch.compile of the repeated transformer blocks."""

    fullgraph: bool = True
    dynamic: bool = True
    mode: str | None = None
    #: "inductor" on GPU; tests use "eager" to check dynamo's guards without a compiler.
    backend: str = "inductor"


@dataclass(frozen=True)
class StepCacheSpec:
    """Whole-forward step cache: the first `exact_fraction` of steps are always computed,
    then one forward in every `cache_interval` steps; the others are predicted."""

    exact_fraction: float = TURBO_EXACT_FRACTION
    cache_interval: int = TURBO_CACHE_INTERVAL
    #: Order of the Taylor extrapolation of the transformer's output (TaylorSeer).
    max_order: int = 1

    def exact_steps(self, steps: int) -> int:
        """Steps computed in full before any is predicted (at least one)."""
        # round() first: 30 * 0.25 must give 8, not a float-fuzzed 7.5000001 → 9.
        return max(1, math.ceil(round(steps * self.exact_fraction, 6)))

    def schedule(self, steps: int) -> tuple[bool, ...]:
        """For each step, whether the transformer runs (True) or its output is predicted.

        After the exact steps, every `cache_interval`-th step is computed, so each computed
        step follows `cache_interval - 1` predicted ones.
        """
        exact = self.exact_steps(steps)
        return tuple(step < exact or (step - exact + 1) % self.cache_interval == 0
                     for step in range(steps))


@dataclass(frozen=True)
class EnginePlan:
    """The levers one engine applies, in the order they are applied."""

    tier: Tier
    memory_mode: MemoryMode
    device: str
    dtype: str
    #: A diffusers backend name, "auto" (the fastest of attention_candidates, timed at load)
    #: or None (leave diffusers' process default: only for stock-diffusers comparisons).
    attention_backend: str | None = None
    attention_candidates: tuple[str, ...] = ()
    fuse_qkv: bool = False
    fp8_linears: bool = False
    fp8_weight_storage: bool = False
    transformer_offload: Offload = "none"
    text_encoder_offload: Offload = "none"
    compile: CompileSpec | None = None
    step_cache: StepCacheSpec | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    def levers(self) -> list[str]:
        """Short names of the levers applied, for logs, /readyz and the benchmark."""
        names = []
        # native is set explicitly too (pipelines/levers/attention.py) but is no lever.
        if self.attention_backend and self.attention_backend != "native":
            names.append(f"attention={self.attention_backend}")
        flags = [("fused_qkv", self.fuse_qkv), ("fp8_linears", self.fp8_linears),
                 ("fp8_weight_storage", self.fp8_weight_storage)]
        names += [name for name, on in flags if on]
        if self.transformer_offload != "none":
            names.append(f"transformer_offload={self.transformer_offload}")
        if self.text_encoder_offload != "none":
            names.append(f"t5_offload={self.text_encoder_offload}")
        if self.compile:
            names.append(f"compile(dynamic={self.compile.dynamic},"
                         f"fullgraph={self.compile.fullgraph})")
        if self.step_cache:
            names.append(f"step_cache(whole forward, exact={self.step_cache.exact_fraction:.0%},"
                         f"interval={self.step_cache.cache_interval})")
        return names


def plan_engine(tier: Tier, memory_mode: MemoryMode, device: str,
                caps: Capabilities) -> EnginePlan:
    """The levers for (tier, memory mode, device), or InvalidInput naming what is missing.

    On CPU only the exact tier at full memory runs, with no lever at all: it must match
    stock diffusers bit for bit, and every lever here is a CUDA lever.
    """
    if tier not in TIERS:
        raise InvalidInput(f"unknown tier {tier!r}; choose one of {', '.join(TIERS)}")
    if memory_mode not in MEMORY_MODES:
        raise InvalidInput(f"unknown memory mode {memory_mode!r}; choose one of "
                           f"{', '.join(MEMORY_MODES)}")
    if not device.startswith("cuda"):
        return _cpu_plan(tier, memory_mode, device)
    return _checked_cuda_plan(tier, memory_mode, caps, device)


def _checked_cuda_plan(tier: Tier, memory_mode: MemoryMode, caps: Capabilities,
                       device: str = "cuda") -> EnginePlan:
    if not caps.cuda:
        raise InvalidInput("device cuda was asked for but no CUDA device is available")
    if tier != "exact" and not caps.fp8:
        raise InvalidInput(_fp8_missing(tier, caps))
    if tier != "exact" and memory_mode == "16gb":
        raise InvalidInput(
            f"--tier {tier} with --memory-mode 16gb is not supported: 16gb mode streams the "
            "transformer's weights from CPU memory, which this server only does for the "
            "exact tier's weights (torchao float8 weights are kept on the GPU). Use --tier "
            "exact --memory-mode 16gb, or --memory-mode 24gb.")
    return _cuda_plan(tier, memory_mode, caps, device)


def _cpu_plan(tier: Tier, memory_mode: MemoryMode, device: str) -> EnginePlan:
    if tier != "exact":
        raise InvalidInput(
            f"--tier {tier} needs a CUDA GPU with float8 support (compute capability "
            f"{FP8_MIN_CAPABILITY[0]}.{FP8_MIN_CAPABILITY[1]}+) and torchao; the device is "
            f"{device}. Use --tier exact on {device}.")
    if memory_mode != "full":
        raise InvalidInput(
            f"--memory-mode {memory_mode} limits GPU memory and needs a CUDA device; the "
            f"device is {device}. Use --memory-mode full on {device}.")
    # No note: "no levers" is the plan, not a caveat (levers.py logs the plan at INFO).
    return EnginePlan(tier="exact", memory_mode="full", device=device, dtype="float32",
                      attention_backend="native")


def _fp8_missing(tier: Tier, caps: Capabilities) -> str:
    if not caps.torchao:
        return (f"--tier {tier} needs torchao for float8 matmuls, which is not installed: "
                "pip install -e '.[gpu]' (or pip install torchao), or use --tier exact.")
    cc = caps.compute_capability or (0, 0)
    return (f"--tier {tier} needs float8 tensor cores (compute capability "
            f"{FP8_MIN_CAPABILITY[0]}.{FP8_MIN_CAPABILITY[1]}+, Ada or Hopper); this GPU is "
            f"{cc[0]}.{cc[1]}. Use --tier exact.")


def _cuda_plan(tier: Tier, memory_mode: MemoryMode, caps: Capabilities,
               device: str = "cuda") -> EnginePlan:
    notes: list[str] = []
    fp8 = tier != "exact"
    # 24gb keeps the transformer resident at one byte per weight: torchao fp8 for the fp8
    # tiers, fp8 storage with bf16 compute (layerwise casting) for exact. 16gb streams the
    # transformer from pinned CPU memory instead.
    storage = memory_mode != "full" and not fp8
    if storage:
        notes.append(f"--memory-mode {memory_mode} stores the transformer's weights in fp8 "
                     "(computed in bf16): the exact tier is then no longer bit-exact")
    transformer_offload: Offload = "group_streamed" if memory_mode == "16gb" else "none"
    # Weight casting and offload hooks move or convert weights inside every block, which
    # dynamo cannot capture in one graph: compile only a transformer without them.
    compile_ok = not storage and transformer_offload == "none"
    step_cache = StepCacheSpec() if tier == "turbo" else None
    compile_spec = None
    if compile_ok:
        # The step cache wraps the whole transformer, outside the compiled blocks: they stay
        # one graph each (fullgraph) in every tier.
        compile_spec = CompileSpec()
    else:
        notes.append("torch.compile is off: weight-casting/offload hooks run in every block")
    return EnginePlan(
        tier=tier, memory_mode=memory_mode, device=device, dtype="bfloat16",
        attention_backend="auto", attention_candidates=attention_candidates(caps),
        # Fusing replaces q/k/v with one linear; torchao then quantises the fused weight.
        fuse_qkv=transformer_offload == "none" and not storage,
        fp8_linears=fp8, fp8_weight_storage=storage,
        transformer_offload=transformer_offload,
        text_encoder_offload="none" if memory_mode == "full" else "group_streamed",
        compile=compile_spec, step_cache=step_cache, notes=tuple(notes),
    )


def attention_candidates(caps: Capabilities) -> tuple[str, ...]:
    """The diffusers backends an "auto" plan times at load: FlashAttention 3 on Hopper when
    diffusers can use it, then cuDNN, flash and memory-efficient SDPA.

    The *_hub backends are never candidates: they download kernels at run time.
    """
    fa3 = caps.flash_attn_3 and caps.compute_capability is not None \
        and caps.compute_capability >= FA3_CAPABILITY
    return (("_flash_3",) if fa3 else ()) + ATTENTION_CANDIDATES


def detect_capabilities() -> Capabilities:
    """Look at this machine: CUDA, its compute capability, torchao and FlashAttention 3."""
    import importlib.util

    import torch

    from pipelines.levers.attention import backend_unavailable

    if not torch.cuda.is_available():
        return Capabilities()
    return Capabilities(
        cuda=True,
        compute_capability=tuple(torch.cuda.get_device_capability()),  # type: ignore[arg-type]
        torchao=importlib.util.find_spec("torchao") is not None,
        # diffusers' own check: its _flash_3 backend needs the `flash_attn_3` package.
        flash_attn_3=backend_unavailable("_flash_3") is None,
    )
