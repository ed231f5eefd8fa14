"""The engine's one entry point for LoRAs: switch a job's LoRAs in, reset, list, count.

KontextEngine builds one LoraManager when it has a LoRA folder, calls `install` while the
levers are applied (before compile), `switch` at the start of every job and `reset` after it.
"""

from __future__ import annotations

import dataclasses
import logging
import time

from pipelines.contract import MAX_LORAS_PER_JOB, LoraChoice, LoraSwitch
from pipelines.errors import InvalidInput
from pipelines.levers.plan import EnginePlan
from pipelines.loras.cache import AdapterCache, CacheStats
from pipelines.loras.choices import check_choices
from pipelines.loras.library import LoraEntry, LoraLibrary
from pipelines.loras.loading import PreparedAdapter, Skeleton, prepare_adapter

log = logging.getLogger(__name__)

#: Host memory for loaded adapters: a rank-64 LoRA on every layer is ~0.7 GB in bf16.
DEFAULT_CACHE_BYTES = 4 * 2**30
#: Slot rank: LoRAs up to this rank load; each slot costs rank × 5.4 M parameters of GPU
#: memory at full size (~0.7 GB per slot at rank 64 in bf16).
DEFAULT_MAX_RANK = 64


def tier_problem(plan: EnginePlan) -> str | None:
    """Why LoRAs cannot run with this plan's levers, or None when they can.

    fp8/turbo take LoRAs: the slots wrap torchao's float8 linears (PEFT's TorchaoLoraLinear),
    so each LoRA runs in bf16 beside the quantised matmul, never inside it.
    """
    if plan.memory_mode != "full":
        return (f"LoRAs need --memory-mode full; in {plan.memory_mode} mode hooks cast or "
                "stream the transformer's weights inside every block, and LoRA slots are not "
                "supported there yet. Use --memory-mode full for LoRA jobs.")
    return None


class LoraManager:
    """A LoRA folder, an adapter cache and (once installed) the transformer's slots."""

    def __init__(self, folder, cache_bytes: int = DEFAULT_CACHE_BYTES,
                 max_rank: int = DEFAULT_MAX_RANK, max_loras: int = MAX_LORAS_PER_JOB) -> None:
        self.library = LoraLibrary(folder)
        self.cache = AdapterCache(cache_bytes)
        self.max_rank = max_rank
        self.max_loras = max_loras
        self.slots = None
        self.problem: str | None = "the engine is not loaded"
        self._skeleton: Skeleton | None = None
        self._dtype = None
        self._pin = False

    def adjust_plan(self, plan: EnginePlan) -> EnginePlan:
        """The plan without fused QKV: LoRAs target to_q, to_k and to_v separately, and a
        fused projection would bypass them."""
        if not plan.fuse_qkv:
            return plan
        return dataclasses.replace(plan, fuse_qkv=False, notes=(
            *plan.notes, "fused QKV is off: LoRAs target the separate q/k/v projections"))

    def install(self, transformer, plan: EnginePlan) -> None:
        """Add the slots to `transformer` (weights final, not yet compiled), if the plan allows."""
        from pipelines.loras.slots import LoraSlots

        self._skeleton = Skeleton(dict(transformer.config))
        self._dtype = transformer.dtype
        self._pin = transformer.device.type == "cuda"
        self.problem = tier_problem(plan)
        if self.problem is not None:
            log.warning("LoRA folder %s is listed, but LoRA jobs are refused: %s",
                        self.library.folder, self.problem)
            return
        started = time.perf_counter()
        self.slots = LoraSlots(transformer, self.max_loras, self.max_rank)
        log.info("LoRA slots: %d × rank %d on %d layers in %.2fs (folder %s)", self.max_loras,
                 self.max_rank, len(self.slots.layers), time.perf_counter() - started,
                 self.library.folder)

    def switch(self, choices: tuple[LoraChoice, ...]) -> LoraSwitch:
        """Make the slots hold exactly `choices` (none: slots off), or raise InvalidInput.

        Every LoRA is resolved and loaded before any slot changes, so a refused job leaves
        the slots as they were (off: the previous job reset them).
        """
        started = time.perf_counter()
        choices = check_choices(choices, self.max_loras)
        if choices and self.slots is None:
            raise InvalidInput(f"loras: {self.problem}")
        hits = misses = 0
        plan = []
        for choice in choices:
            entry = self.library.get(choice.name)
            adapter, hit = self._adapter(entry)
            hits, misses = hits + hit, misses + (not hit)
            if choice.scale != 0:  # scale 0 is no LoRA: skip its forward cost entirely
                plan.append((entry.version, adapter, float(choice.scale)))
        if self.slots is not None:
            self.slots.activate(plan)
            self._synchronize()
        applied = tuple(LoraChoice(adapter.name, scale) for _, adapter, scale in plan)
        return LoraSwitch(applied=applied, switch_seconds=time.perf_counter() - started,
                          cache_hits=hits, cache_misses=misses)

    def switch_blank(self, count: int) -> LoraSwitch:
        """Use `count` slots at scale 0: warm-up traces the compiled variant for `count`."""
        if self.slots is not None:
            self.slots.activate_blank(count)
        return LoraSwitch(applied=(), switch_seconds=0.0, cache_hits=0, cache_misses=0)

    def reset(self) -> None:
        """Slots off: the next job starts from the no-LoRA state whatever happened."""
        if self.slots is not None:
            self.slots.set_active(0)

    def close(self) -> None:
        """Release the cached adapters (pinned host memory) and the slots' references."""
        self.cache.clear()
        self.slots = None
        self._skeleton = None
        self.problem = "the engine is closed"

    def entries(self) -> list[LoraEntry]:
        """The folder's LoRAs (rescanned), with the verdict of any full load so far."""
        return self.library.entries()

    def entry(self, name: str) -> LoraEntry:
        """The LoRA called `name` (one stat when known), or InvalidInput naming the folder."""
        return self.library.get(name)

    def stats(self) -> CacheStats:
        """Adapter-cache counters since start."""
        return self.cache.stats()

    def _adapter(self, entry: LoraEntry) -> tuple[PreparedAdapter, bool]:
        cached = self.cache.get(entry.version)
        if cached is not None:
            return cached, True  # type: ignore[return-value]
        try:
            adapter = prepare_adapter(entry, self._skeleton, self._dtype, self._pin)
            if adapter.rank > self.max_rank:
                raise InvalidInput(f"LoRA {entry.name!r} has rank {adapter.rank}, above this "
                                   f"server's LoRA slot rank {self.max_rank} "
                                   "(--lora-max-rank)")
        except InvalidInput as exc:
            self.library.record_load(entry, str(exc))
            raise
        self.library.record_load(entry, None)
        self.cache.put(entry.version, adapter)
        return adapter, False

    def _synchronize(self) -> None:
        """Wait for the copies so that switch_seconds covers them (the GPU is idle here)."""
        if self._pin:
            import torch

            torch.cuda.synchronize()


def switch_for_job(manager: LoraManager | None, choices: tuple[LoraChoice, ...],
                   warmup_count: int = 0) -> LoraSwitch | None:
    """Switch a job's LoRAs in (`warmup_count` > 0: that many blank slots on, to trace the
    compiled variant); InvalidInput when the job asks for LoRAs and there is no folder."""
    if manager is None:
        if choices:
            raise InvalidInput("loras: this server has no LoRA folder (start it with "
                               "--lora-dir DIR)")
        return None
    if warmup_count:
        return manager.switch_blank(warmup_count)
    return manager.switch(choices)
