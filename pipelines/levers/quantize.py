"""Weight levers of the transformer: fused QKV projections and torchao float8 linears.

Both run while the bf16 weights are still in CPU memory, so the GPU never holds the
bf16 transformer (23.8 GB) next to its fused or quantised copy: torchao moves each linear
to the GPU as it quantises it, one layer at a time.
"""

from __future__ import annotations

import logging
import re

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


#: Linears the fp8 tiers keep in bf16, by qualified name, after torchao's own FLUX accuracy
#: benchmark (benchmarks/quantization/eval_accuracy_and_perf_of_flux.py in pytorch/ao): the
#: embedders (x, context, time/guidance/text), the final AdaLN `norm_out.linear` and
#: `proj_out`, and the AdaLN modulation linears, whose activations are one row per image (no
#: fp8 speed-up, only its error). torchao matches `norm.linear` (the single blocks'); we keep
#: the double blocks' `norm1.linear` / `norm1_context.linear` too, for torchao's stated
#: reason. (flux-fast quantises every linear, per tensor.) torchao's other rule, no side
#: under 1024, excludes nothing more on the real model.
KEEP_BF16 = re.compile(r"(^|\.)(x_embedder|context_embedder|time_text_embed\..*"
                       r"|norm_out\.linear|norm1?(_context)?\.linear)$|^proj_out$")


def fp8_eligible(name: str, module) -> bool:
    """Whether the fp8 tiers quantise `module` (qualified name `name`): a Linear that is not
    kept in bf16 and whose sides are multiples of 16 (torchao's float8 rule)."""
    import torch

    return (isinstance(module, torch.nn.Linear) and not KEEP_BF16.search(name)
            and module.in_features % 16 == 0 and module.out_features % 16 == 0)


def quantize_fp8_linears(transformer, device: str) -> None:
    """torchao float8 dynamic activation + weight quantisation (per-row scales) of the
    transformer's linears but those KEEP_BF16 names, moving each to `device` as it goes.

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
    quantize_(transformer, config, filter_fn=lambda module, name: fp8_eligible(name, module),
              device=device)
    # quantize_ moves only the modules it quantises: the bf16 ones follow.
    transformer.to(device)
