"""Apply an EnginePlan's levers to a loaded FluxKontextPipeline, with diffusers' own hooks.

Order matters: the weight levers (fused QKV, torchao float8) run while the weights are
still in CPU memory, float8 linears going to the GPU one by one as they are quantised; then
components are placed (moved, or hooked to stream from CPU); then the attention backend and
the fp8 attention processors, the CUDA graph hook and the step cache are set; torch.compile
comes last so that it traces the final modules (the hooks stay outside the compiled blocks).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from pipelines.levers.attention import NATIVE, choose_backend, set_backend
from pipelines.levers.attention_fp8 import enable_fp8_attention
from pipelines.levers.cuda_graphs import enable_cuda_graphs
from pipelines.levers.plan import EnginePlan
from pipelines.levers.quantize import fuse_qkv, quantize_fp8_linears
from pipelines.levers.step_cache import enable_step_cache

log = logging.getLogger(__name__)

#: Text encoder that group-offload mode streams from CPU memory (T5-XXL, 9.5 GB in bf16).
OFFLOADED_TEXT_ENCODER = "text_encoder_2"


def apply_plan(pipe, plan: EnginePlan, before_compile: Callable | None = None,
               after_attention: Callable | None = None) -> str | None:
    """Apply every lever of the plan to a pipeline loaded in CPU memory and place it on the
    plan's device. Returns the attention backend set (None: diffusers' default left alone).

    `before_compile(transformer)` runs once the weights are final and placed, before any
    hook or compile sees the modules (the LoRA slots of pipelines/loras go in there).
    `after_attention(transformer)` runs once the attention backend is set, before the CUDA
    graph and step-cache hooks and the compile (a group's sequence split goes in there).
    """
    transformer = pipe.transformer
    if plan.fuse_qkv:
        log.info("fused QKV: dropped %d unfused projections", fuse_qkv(transformer))
    if plan.fp8_linears:
        quantize_fp8_linears(transformer, plan.device)
    place_components(pipe, plan)
    if before_compile is not None:
        before_compile(transformer)
    backend = apply_attention_backend(transformer, plan)
    if plan.fp8_attention:
        backend = f"{enable_fp8_attention(transformer)} (float8 q/k/v)"
    if after_attention is not None:
        after_attention(transformer)
    # The graph hook first: the step cache registered after it wraps it, so that a
    # predicted step never reaches a graph.
    if plan.cuda_graphs is not None:
        enable_cuda_graphs(transformer, plan.cuda_graphs, cuda=plan.device.startswith("cuda"))
    if plan.step_cache is not None:
        enable_step_cache(transformer, plan.step_cache)
    if plan.compile is not None:
        compile_transformer(transformer, plan)
    log.info("engine plan %s/%s on %s: %s", plan.tier, plan.memory_mode, plan.device,
             ", ".join(plan.levers()) or "no levers (stock diffusers)")
    for note in plan.notes:
        log.warning("engine plan: %s", note)
    return backend


def apply_attention_backend(transformer, plan: EnginePlan) -> str | None:
    """Set the plan's backend on every attention processor ("auto": the fastest candidate,
    timed on the GPU now); None leaves diffusers' process default (stock comparisons)."""
    name = plan.attention_backend
    if name is None:
        return None
    if name == "auto":
        name = NATIVE
        if plan.device == "cuda" and plan.attention_candidates:
            name, _ = choose_backend(transformer, plan.attention_candidates,
                                     transformer.dtype)
    return set_backend(transformer, name)


def place_components(pipe, plan: EnginePlan) -> None:
    """Move components to the device, or hook the offloaded ones to stream from CPU."""
    import torch

    if plan.transformer_offload == "none" and plan.text_encoder_offload == "none" \
            and not plan.fp8_weight_storage:
        pipe.to(plan.device)
        return
    from diffusers.hooks import apply_group_offloading

    device = torch.device(plan.device)
    for name, component in pipe.components.items():
        if not isinstance(component, torch.nn.Module):
            continue
        if name == "transformer":
            _place_transformer(component, plan, device)
        elif name == OFFLOADED_TEXT_ENCODER and plan.text_encoder_offload != "none":
            # T5 is not a diffusers model and its blocks sit one level down: leaf-level
            # groups with a prefetch stream work for any module.
            apply_group_offloading(component, onload_device=device, offload_type="leaf_level",
                                   use_stream=True)
        else:
            component.to(device)


def _place_transformer(transformer, plan: EnginePlan, device) -> None:
    import torch

    if plan.fp8_weight_storage:
        # Layerwise casting first: group offload then moves the one-byte weights.
        transformer.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn,
                                             compute_dtype=torch.bfloat16)
    if plan.transformer_offload == "group_streamed":
        transformer.enable_group_offload(onload_device=device, offload_type="block_level",
                                         num_blocks_per_group=1, use_stream=True)
    else:
        transformer.to(device)


def compile_transformer(transformer, plan: EnginePlan) -> None:
    """Regional compile of the 57 repeated blocks with dynamic shapes.

    Dynamic shapes: the image-token count varies with the output size and the reference's
    aspect ratio; one dynamic graph per block serves them all (see pipelines/engine/warmup.py).
    """
    import torch

    spec = plan.compile
    assert spec is not None
    # One dynamic graph per block class is expected; a large limit would only hide shape
    # churn (recompile_limit is the newer name of cache_size_limit).
    limit_name = "recompile_limit" if hasattr(torch._dynamo.config, "recompile_limit") \
        else "cache_size_limit"
    setattr(torch._dynamo.config, limit_name, 8)
    kwargs = {"fullgraph": spec.fullgraph, "dynamic": spec.dynamic, "backend": spec.backend}
    if spec.mode and spec.backend == "inductor":  # modes are inductor's options
        kwargs["mode"] = spec.mode
    transformer.compile_repeated_blocks(**kwargs)
