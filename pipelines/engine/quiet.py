"""Third-party warnings that do not apply to this engine, silenced where they are emitted.

Each is dropped by a filter on the one logger (or warning category and module) that emits
it, matching its own words, so any other message of that logger (and the same words from
another library) still shows. Each entry says why its warning means nothing here.
"""

from __future__ import annotations

import logging
import warnings

#: (logger, words of the message) for each logged warning that does not apply here.
INAPPLICABLE = (
    # diffusers' Flux modules import CLIPImageProcessor for the optional IP-adapter image
    # encoder. Without torchvision, transformers 5 substitutes the PIL processor and says
    # so, once per class. The Kontext pipeline never uses an image processor (references go
    # through the VAE), so which backend it would have is moot; torchvision's PyPI build is
    # tied to CUDA torch, so installing it is not a cheap fix.
    ("transformers.utils.import_utils", "requires torchvision (not installed); falling back"),
    # torchao tries each optional C++ kernel library it ships (`_C_mxfp8` for MX formats,
    # `_C_cutlass_90a` for Hopper CUTLASS kernels), built for one Python ABI and CUDA; the
    # others fail to load at import. The fp8 tier's float8 linears run on torch's
    # `_scaled_mm`, never on these kernels.
    ("torchao", "Failed to load"),
    # torchao's int-matmul module imports Triton, which CPU builds of torch lack (CUDA builds
    # bring it). No int-matmul kernel is used by any tier.
    ("torchao.kernel.intmm", "Detected no triton"),
    # torch 2.13 deprecates register_constant() on Enums, which torchao 0.18 still calls
    # for its own Enums at import (KernelPreference, ScaleCalculationMode): torchao's to fix,
    # and it changes nothing for compiled code here.
    ("torch.utils._pytree", "is an Enum subclass and is now natively supported"),
    # diffusers registers torchao's tensor classes for loading torchao-serialized
    # checkpoints, and says so when one moved in a newer torchao. This server loads only
    # plain safetensors checkpoints and quantizes them itself.
    ("diffusers.quantizers.torchao.torchao_quantizer", "Unable to import `torchao` Tensor"),
    # diffusers calls its attention-backend API experimental each time a backend is set;
    # the engine sets one per load (pipelines/levers/attention.py) on the pinned diffusers
    # version, where the API is tested here. A message for diffusers' own users.
    ("diffusers.models.modeling_utils", "Attention backends are an experimental feature"),
)

#: (message regex, module regex) of Python warnings that do not apply here.
INAPPLICABLE_WARNINGS = (
    # PEFT warns when a second adapter is attached to a model that has one. The LoRA
    # manager keeps several adapters loaded on purpose (one per slot, switched per job;
    # pipelines/loras/slots.py), so this is the designed state, not a mistake.
    (r"Already found a `peft_config` attribute in the model", r"peft\.tuners\.tuners_utils"),
    # On the fp8/turbo tiers PEFT wraps torchao's float8 linears (TorchaoLoraLinear) and
    # warns that merge()/unmerge() would fail without a requantisation recipe. LoRAs here
    # are never merged into the weights: they run beside the float8 matmul, switched per job.
    (r"TorchaoLoraLinear was instantiated without", r"peft\.tuners\.lora\.torchao"),
)


class _DropMessage(logging.Filter):
    """Drops the records whose message contains `words`."""

    def __init__(self, words: str) -> None:
        super().__init__()
        self.words = words

    def filter(self, record: logging.LogRecord) -> bool:
        return self.words not in record.getMessage()


def silence_inapplicable_warnings() -> None:
    """Install the filters of INAPPLICABLE and INAPPLICABLE_WARNINGS (idempotent); before
    diffusers, transformers, torchao or peft is imported."""
    for name, words in INAPPLICABLE:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropMessage) and f.words == words for f in logger.filters):
            logger.addFilter(_DropMessage(words))
    for message, module in INAPPLICABLE_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=UserWarning, module=module)
