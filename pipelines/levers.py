"""Apply an EnginePlan's levers to a loaded FluxKontextPipeline, with diffusers' own hooks.

Order matters: weights are placed and converted (offload, fp8 storage, fused QKV,
torchao float8) before the attention backend and the step cache are set, and
torch.compile comes last so that it traces the final modules.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable

from pipelines.engine_plan import EnginePlan, StepCacheSpec
from pipelines.errors import InvalidInput

log = logging.getLogger(__name__)

#: diffusers' registry name for the TaylorSeer hook (diffusers/hooks/taylorseer_cache.py).
TAYLORSEER_HOOK = "taylorseer_cache"
#: Text encoder that group-offload mode streams from CPU memory (T5-XXL, 9.5 GB in bf16).
OFFLOADED_TEXT_ENCODER = "text_encoder_2"


def apply_plan(pipe, plan: EnginePlan, before_compile: Callable | None = None) -> None:
    """Place the pipeline on the plan's device and apply every lever the plan lists.

    `before_compile(transformer)` runs once the weights are final and before any hook or
    compile sees the modules (the LoRA slots of pipelines/loras go in there).
    """
    place_components(pipe, plan)
    transformer = pipe.transformer
    if plan.fuse_qkv:
        transformer.fuse_qkv_projections()
    if plan.fp8_linears:
        quantize_fp8_linears(transformer)
    if before_compile is not None:
        before_compile(transformer)
    if plan.attention_backend and plan.attention_backend != "native":
        transformer.set_attention_backend(plan.attention_backend)
    if plan.step_cache is not None:
        enable_step_cache(transformer, plan.step_cache)
    if plan.compile is not None:
        compile_transformer(transformer, plan)
    log.info("engine plan %s/%s on %s: %s", plan.tier, plan.memory_mode, plan.device,
             ", ".join(plan.levers()) or "no levers (stock diffusers)")
    for note in plan.notes:
        log.warning("engine plan: %s", note)


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


def quantize_fp8_linears(transformer) -> None:
    """torchao float8 dynamic activation + weight quantisation, per-row scales."""
    try:
        from torchao.quantization import (
            Float8DynamicActivationFloat8WeightConfig,
            PerRow,
            quantize_,
        )
    except ImportError as exc:  # the plan checks first; this is for hand-built plans
        raise InvalidInput(
            "fp8 linears need torchao: pip install 'kontext-server[gpu]'") from exc
    quantize_(transformer, Float8DynamicActivationFloat8WeightConfig(granularity=PerRow()))


def enable_step_cache(transformer, spec: StepCacheSpec) -> None:
    """Register diffusers' TaylorSeer hooks; the exact steps are set per job."""
    import torch
    from diffusers import TaylorSeerCacheConfig

    transformer.enable_cache(TaylorSeerCacheConfig(
        cache_interval=spec.cache_interval, disable_cache_before_step=1, max_order=1,
        # fp32 factors: the extrapolation subtracts nearby features, bf16 would cancel.
        taylor_factors_dtype=torch.float32,
    ))


def prepare_step_cache(transformer, spec: StepCacheSpec | None, steps: int) -> int:
    """Reset the cache's state and set this job's exact steps; returns them (0: no cache).

    The hooks' step threshold is plain attribute state read outside any compiled graph,
    so setting it per job neither recompiles nor leaks into the next job (it is set again).
    """
    if hasattr(transformer, "_reset_stateful_cache"):
        # A job that failed mid-way leaves the hooks' state behind; start clean.
        transformer._reset_stateful_cache()
    if spec is None:
        return 0
    exact = spec.exact_steps(steps)
    for module in transformer.modules():
        registry = getattr(module, "_diffusers_hook", None)
        hook = registry.get_hook(TAYLORSEER_HOOK) if registry is not None else None
        if hook is not None:
            hook.disable_cache_before_step = exact
    return exact


def step_cache_context(transformer, spec: StepCacheSpec | None):
    """The cache context the step-cache hooks need around the denoising loop.

    FluxKontextPipeline (unlike some pipelines) does not open one itself; without a step
    cache this is a no-op context.
    """
    if spec is None:
        return contextlib.nullcontext()
    return transformer.cache_context("cond")


def compile_transformer(transformer, plan: EnginePlan) -> None:
    """Regional compile of the 57 repeated blocks with dynamic shapes.

    Dynamic shapes: the image-token count varies with the output size and the reference's
    aspect ratio; one dynamic graph per block serves them all (see pipelines/shapes.py).
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
    if spec.mode:
        kwargs["mode"] = spec.mode
    transformer.compile_repeated_blocks(**kwargs)
