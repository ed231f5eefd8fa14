"""Fixed LoRA slots in the transformer, switched by copying weights in place.

This is diffusers' LoRA hot-swap (`enable_lora_hotswap(target_rank=…)` then
`load_lora_weights(…, hotswap=True)`) taken one step further, on the same PEFT layers:

* Hot-swap keeps the module structure and tensor shapes that torch.compile traced and only
  copies new values into them; ranks are padded to one target rank and each scaling is a
  tensor updated in place (peft.utils.hotswap). We do exactly that.
* Hot-swap can only swap in an adapter that targets a subset of the first adapter's modules
  (a new target would change the traced graph), and its config check refuses adapters with
  different alpha patterns. Real LoRAs target different module sets, so the slots are created
  empty on *every* Linear of the transformer before compile; a LoRA's modules are copied in,
  every other module of the slot is zero. Alphas are folded into B when a LoRA is loaded.
* A job uses k of the slots (k = its LoRA count); PEFT's forward loops over the active
  adapters, so each k is its own compiled variant, traced once at warm-up (engine.warmup).
* A job without LoRAs turns the slots off (PEFT's `disable_adapters` flag): each layer then
  runs only its base Linear, the same operation as a model that never had a LoRA, so the
  output is bit-identical (tests/engine/test_loras.py proves it).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipelines.loras.loading import PreparedAdapter


SLOT_PREFIX = "kontext_lora_"


class LoraSlots:
    """`count` adapters of rank `rank` on every Linear of `transformer`, initially off."""

    def __init__(self, transformer, count: int, rank: int) -> None:
        import torch
        from peft import LoraConfig
        from peft.tuners.lora import LoraLayer

        self.rank = rank
        self.names = [f"{SLOT_PREFIX}{index}" for index in range(count)]
        targets = [name for name, module in transformer.named_modules()
                   if isinstance(module, torch.nn.Linear)]
        for name in self.names:
            transformer.add_adapter(LoraConfig(r=rank, lora_alpha=rank, lora_dropout=0.0,
                                               target_modules=targets), adapter_name=name)
        self.layers = {name: module for name, module in transformer.named_modules()
                       if isinstance(module, LoraLayer)}
        device = next(transformer.parameters()).device
        # One scale tensor per slot, shared by all its layers: a job's scale is one fill_.
        # A tensor, not a float, so that changing it never invalidates a compiled graph.
        self.scales = [torch.zeros((), dtype=torch.float32, device=device) for _ in self.names]
        for layer in self.layers.values():
            for name, scale in zip(self.names, self.scales, strict=True):
                layer.scaling[name] = scale
        self._active = {k: self.names[:k] for k in range(1, count + 1)}
        self._contents: list[Hashable | None] = [None] * count
        with torch.no_grad():
            for index in range(count):
                torch._foreach_zero_(self._slot_tensors(index))
        for parameter in self._all_parameters():
            parameter.requires_grad_(False)
        self._count = -1
        self.set_active(0)

    def activate(self, plan: Sequence[tuple[Hashable, PreparedAdapter, float]]) -> None:
        """Put plan[i] = (key, adapter, scale) into slot i and use exactly len(plan) slots.

        A slot that already holds `key` is not copied again: only its scale is set.
        """
        import torch

        with torch.no_grad():
            for index, (key, adapter, scale) in enumerate(plan):
                if self._contents[index] != key:
                    self._contents[index] = None  # stays unknown if the copy fails
                    self._copy(index, adapter)
                    self._contents[index] = key
                self.scales[index].fill_(scale)
        self.set_active(len(plan))

    def activate_blank(self, count: int) -> None:
        """Use `count` slots at scale 0 (warm-up traces each count without changing output)."""
        for scale in self.scales[:count]:
            scale.fill_(0.0)
        self.set_active(count)

    def set_active(self, count: int) -> None:
        """Use the first `count` slots; 0 turns the LoRA layers off (base Linear only)."""
        if count == self._count:
            return
        for layer in self.layers.values():
            if count:
                layer.set_adapter(self._active[count], inference_mode=True)
            # PEFT's enable_adapters(True) would also mark the slots trainable; we only
            # flip the flag its forward reads.
            layer._disable_adapters = count == 0
        self._count = count

    def _copy(self, index: int, adapter: PreparedAdapter) -> None:
        import torch

        slot = self.names[index]
        zero, targets, sources = [], [], []
        for module, layer in self.layers.items():
            down, up = layer.lora_A[slot].weight, layer.lora_B[slot].weight
            weights = adapter.weights.get(module)
            if weights is None:
                zero += [down, up]
                continue
            rank = weights[0].shape[0]
            zero += [down[rank:], up[:, rank:]]
            targets += [down[:rank], up[:, :rank]]
            sources += list(weights)
        missing = set(adapter.weights) - set(self.layers)
        if missing:
            raise ValueError(f"LoRA {adapter.name!r} targets modules without slots: "
                             f"{sorted(missing)[:3]}")
        zero = [tensor for tensor in zero if tensor.numel()]
        if zero:  # empty when the LoRA fills every layer at the slot's full rank
            torch._foreach_zero_(zero)
        for target, source in zip(targets, sources, strict=True):
            target.copy_(source, non_blocking=True)

    def _slot_tensors(self, index: int) -> list:
        slot = self.names[index]
        return [tensor for layer in self.layers.values()
                for tensor in (layer.lora_A[slot].weight, layer.lora_B[slot].weight)]

    def _all_parameters(self) -> list:
        return [tensor for index in range(len(self.names)) for tensor in self._slot_tensors(index)]
