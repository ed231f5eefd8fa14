"""Weight levers of the transformer: fused QKV projections and torchao float8 linears.

Both run while the bf16 weights are still in CPU memory, so the GPU never holds the
bf16 transformer (23.8 GB) next to its fused or quantised copy: torchao moves each linear
to the GPU as it quantises it, one layer at a time.
"""

from __future__ import annotations

import logging

from pipelines.errors import InvalidInput

log = logging.getLogger(__name__)

#: Projections that fuse_qkv_projections copies into to_qkv / to_added_qkv. diffusers keeps
#: the originals (+4.3 GB in bf16, and torchao would quantise them too): we drop them.
UNFUSED = ("to_q", "to_k", "to_v", "add_q_proj", "add_k_proj", "add_v_proj")


def fuse_qkv(transformer) -> int:
    """Fuse every attention's q/k/v projections and delete the unfused ones.

    Returns how many unfused projections were dropped. The forward only reads the fused
    layers once `fused_projections` is set (diffusers' _get_qkv_projections).
    """
    import torch

    transformer.fuse_qkv_projections()
    dropped = 0
    for module in transformer.modules():
        if not getattr(module, "fused_projections", False):
            continue
        for name in UNFUSED:
            if isinstance(getattr(module, name, None), torch.nn.Linear):
                delattr(module, name)
                dropped += 1
    return dropped


def quantize_fp8_linears(transformer, device: str) -> None:
    """torchao float8 dynamic activation + weight quantisation (per-row scales) of every
    linear, moving each to `device` as it is quantised.

    set_inductor_config=False, deliberately: torchao would otherwise set process-wide
    inductor options (coordinate-descent tuning, int8 fusions) that every later compile in
    the process inherits. Its coordinate-descent tuning only retunes Triton pointwise and
    reduction kernels (the fp8 GEMMs are _scaled_mm calls it does not touch) and lengthens
    the cold compile, so this engine compiles with inductor's defaults; a tier that wants
    them passes them to its own compile (CompileSpec), not to the process.
    """
    try:
        from torchao.quantization import (
            Float8DynamicActivationFloat8WeightConfig,
            PerRow,
            quantize_,
        )
    except ImportError as exc:  # the plan checks first; this is for hand-built plans
        raise InvalidInput(
            "fp8 linears need torchao: pip install -e '.[gpu]'") from exc
    config = Float8DynamicActivationFloat8WeightConfig(granularity=PerRow(),
                                                       set_inductor_config=False)
    quantize_(transformer, config, device=device)

