"""A LoRA file → an adapter ready to copy into the slots, through diffusers' own code.

diffusers converts the layout (FluxLoraLoaderMixin.lora_state_dict) and then builds PEFT's
LoraConfig (ranks, alphas, patterns) and checks every shape inside `load_lora_adapter`. We
need those numbers without touching the live, possibly compiled transformer, so the adapter
is loaded into a *skeleton*: the same transformer class and config on the meta device (no
memory, built in milliseconds), and its LoRA layers are read back. Per module we keep A and
B with PEFT's scaling (alpha / rank) folded into B, so a slot's only scale is the job's.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from typing import Any

from pipelines.contract import LoraEntry
from pipelines.errors import InvalidInput
from pipelines.loras.formats import rename_key

log = logging.getLogger(__name__)

PROBE = "probe"
#: diffusers writes the adapter's LoraConfig as JSON under this metadata key.
METADATA_KEY = "lora_adapter_metadata"
#: Exceptions diffusers/PEFT/safetensors raise on a file they cannot use.
LOAD_ERRORS = (ValueError, KeyError, RuntimeError, AssertionError, TypeError, IndexError,
               NotImplementedError, OSError, AttributeError)


@dataclass(frozen=True)
class PreparedAdapter:
    """One LoRA's per-module weights: A (rank × in) and B (out × rank, scaling folded in)."""

    name: str
    weights: dict[str, tuple[Any, Any]]
    rank: int
    nbytes: int


def prepare_adapter(entry: LoraEntry, skeleton: Skeleton, dtype,
                    pin_memory: bool) -> PreparedAdapter:
    """Read, convert and check `entry` against the skeleton's model, or InvalidInput."""
    if not entry.loads:
        raise InvalidInput(f"LoRA {entry.name!r} cannot be used: {entry.problem}")
    try:
        state_dict, alphas, metadata = _converted_state_dict(entry)
        weights = skeleton.probe(state_dict, alphas, metadata)
    except (InvalidInput, *LOAD_ERRORS) as exc:
        reason = str(exc) if isinstance(exc, InvalidInput) else _reason(exc)
        raise InvalidInput(f"LoRA {entry.name!r} cannot be used on this model: {reason}") \
            from exc
    prepared, nbytes, rank = {}, 0, 0
    for module, (down, up, scaling) in weights.items():
        down = down.to(dtype).contiguous()
        up = (up.float() * scaling).to(dtype).contiguous()
        if pin_memory:  # page-locked: the copy into the slots runs at full PCIe speed
            down, up = down.pin_memory(), up.pin_memory()
        prepared[module] = (down, up)
        nbytes += down.nbytes + up.nbytes
        rank = max(rank, down.shape[0])
    return PreparedAdapter(name=entry.name, weights=prepared, rank=rank, nbytes=nbytes)


def _converted_state_dict(entry: LoraEntry):
    """The file's transformer LoRA tensors in diffusers' layout, its alphas and config."""
    from diffusers import FluxKontextPipeline
    from safetensors import safe_open
    from safetensors.torch import load_file

    raw = {rename_key(key): value for key, value in load_file(str(entry.path)).items()}
    with safe_open(str(entry.path), framework="pt") as handle:
        file_metadata = handle.metadata() or {}
    state_dict, alphas = FluxKontextPipeline.lora_state_dict(raw, return_alphas=True)
    transformer = {key: value for key, value in state_dict.items()
                   if key.startswith("transformer.") and "lora" in key}
    if not transformer:
        raise InvalidInput("it holds no weights for the FLUX transformer")
    metadata = None
    if file_metadata.get(METADATA_KEY):
        # The same JSON diffusers' loader reads: LoraConfig fields, "transformer."-prefixed.
        metadata = json.loads(file_metadata[METADATA_KEY])
    return transformer, (alphas or None) if not metadata else None, metadata


class Skeleton:
    """The transformer of `config` without memory, reused across loads: meta tensors,
    except that every Linear's weight is one float broadcast to its shape (zero strides).
    PEFT puts new LoRA layers on the device of the base weight, which must be a real one.
    Building it takes seconds at full size, hence one per engine."""

    def __init__(self, config: dict) -> None:
        self.config = config
        self._model = None

    def probe(self, state_dict: dict, alphas, metadata) -> dict[str, tuple]:
        """Load into the skeleton; return {module: (A, B, scaling)} or raise."""
        from peft.tuners.lora import LoraLayer

        model = self._model or self._build()
        self._model = None  # rebuilt next time unless the adapter is removed cleanly below
        model.load_lora_adapter(state_dict, network_alphas=alphas, metadata=metadata,
                                adapter_name=PROBE, low_cpu_mem_usage=True,
                                prefix="transformer")
        found: dict[str, tuple] = {}
        for name, module in model.named_modules():
            if not isinstance(module, LoraLayer) or PROBE not in module.lora_A:
                continue
            if module.use_dora.get(PROBE) or module.lora_B[PROBE].bias is not None:
                raise InvalidInput(f"module {name} uses DoRA or a LoRA bias; only plain LoRA "
                                   "(A/B matrices) is supported")
            down, up = module.lora_A[PROBE].weight, module.lora_B[PROBE].weight
            if down.is_meta or up.is_meta:
                raise InvalidInput(f"module {name} has only half of its A/B pair")
            found[name] = (down.detach(), up.detach(), float(module.scaling[PROBE]))
        model.delete_adapters(PROBE)
        self._model = model
        wanted = {key.removeprefix("transformer.").split(".lora_")[0] for key in state_dict}
        unmatched = sorted(wanted - set(found))
        if unmatched:
            raise InvalidInput(f"{len(unmatched)} of its modules do not exist in this model "
                               f"(e.g. {', '.join(unmatched[:3])})")
        return found

    def _build(self):
        import torch
        from diffusers import FluxTransformer2DModel

        with torch.device("meta"):
            model = FluxTransformer2DModel.from_config(self.config)
        for module in model.modules():
            if isinstance(module, torch.nn.Linear):
                stand_in = torch.zeros((), dtype=torch.float32).expand(module.weight.shape)
                module.weight = torch.nn.Parameter(stand_in, requires_grad=False)
        return model


_MISMATCH = re.compile(r"size mismatch for (\S+?)\.lora_[AB]\.\w+\.weight: copying a param "
                       r"with shape torch\.Size\((\[.*?\])\) from checkpoint, the shape in "
                       r"current model is torch\.Size\((\[.*?\])\)")


def _reason(exc: BaseException, limit: int = 300) -> str:
    """A one-line reason: shape mismatches said plainly, anything else shortened."""
    text = " ".join(str(exc).split())
    mismatch = _MISMATCH.search(text)
    if mismatch:
        module, theirs, ours = mismatch.groups()
        return (f"its tensor shapes do not match this model ({module}: {theirs} in the file, "
                f"{ours} here); it was made for another model or model size")
    text = f"{type(exc).__name__}: {text}"
    return text if len(text) <= limit else text[:limit] + "…"
