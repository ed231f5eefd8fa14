"""The measuring steps of benchmarks/gpu_run.py; each returns a JSON-able dict."""

from __future__ import annotations

import gc
import time

from bench_common import environment, floor_seconds
from engine_benchmark import reference_image
from gpu_run_engines import Ours, Stock, engine_plan, make_pipeline, timed_edit

from pipelines.engine.warmup import ShapeCase

#: Attention backends timed by the micro-benchmark ("native": what SDPA picks itself).
ATTENTION = ("native", "_flash_3", "_native_cudnn", "_native_flash", "_native_efficient")
#: The two other geometries of the no-recompile proof: (width, height, reference size).
OTHER_GEOMETRIES = ((768, 1024, (300, 700)), (512, 512, None))
RANDOM_WEIGHTS = ("Random weights are not trained weights: deviations measure the arithmetic "
                  "a lever adds to this network, not image quality.")


def facts(ctx) -> dict:
    """Versions and device facts."""
    import torch

    from pipelines.levers.attention import backend_unavailable

    out = {"environment": environment(ctx.device), "torch": torch.__version__,
           "flash_attn_3": backend_unavailable("_flash_3") or "usable"}
    if ctx.device == "cuda":
        props = torch.cuda.get_device_properties(0)
        out |= {"gpu": props.name, "capability": list(torch.cuda.get_device_capability()),
                "memory_gib": round(props.total_memory / 2**30, 1)}
    return out


def micro_attention(ctx) -> dict:
    """One attention call at the full-size geometry per backend, in ms."""
    import torch

    from pipelines.levers.attention import time_backends

    heads, dim, tokens = (24, 128, 8704) if not ctx.tiny else (2, 16, 1024)
    timings = time_backends(ATTENTION, heads, dim, torch.bfloat16, tokens, device=ctx.device)
    return {"shape": [1, heads, tokens, dim],
            "ms": {name: round(s * 1000, 3) for name, s in timings.items()}}


def micro_gemm(ctx) -> dict:
    """bf16 vs float8 at the MLP's shape, TFLOP/s, with the engine's settings: the raw
    row-wise `_scaled_mm` with fast accumulation (the GEMM torchao issues), and a Linear
    quantised by the engine's own quantize_fp8_linears (the dynamic activation
    quantisation included, eager: inductor fuses it in the engine)."""
    import torch

    from pipelines.levers.attention import median_seconds
    from pipelines.levers.quantize import quantize_fp8_linears

    m, k, n = (8704, 3072, 12288) if not ctx.tiny else (256, 128, 512)
    device, fp8 = ctx.device, torch.float8_e4m3fn
    a = torch.randn(m, k, device=device, dtype=torch.bfloat16)
    linear = torch.nn.Linear(k, n, bias=False, device=device, dtype=torch.bfloat16)
    b = linear.weight.detach()
    scale_a = a.abs().amax(dim=1, keepdim=True).float() / torch.finfo(fp8).max
    scale_b = b.abs().amax(dim=1, keepdim=True).float().t() / torch.finfo(fp8).max
    a8, b8 = (a / scale_a).to(fp8), (b / scale_b.t()).to(fp8)
    with torch.inference_mode():
        bf16 = median_seconds(lambda: linear(a), device)
        raw = median_seconds(lambda: torch._scaled_mm(
            a8, b8.t(), scale_a=scale_a, scale_b=scale_b, out_dtype=torch.bfloat16,
            use_fast_accum=True), device)
    quantize_fp8_linears(linear, device)
    with torch.inference_mode():
        engine = median_seconds(lambda: linear(a), device)
    flop = 2 * m * k * n

    def tflops(seconds: float) -> float:
        # three significant figures: the tiny smoke shape runs at well under 0.1 TFLOP/s
        return float(f"{flop / seconds / 1e12:.3g}")

    return {"shape_mkn": [m, k, n], "bf16_tflops": tflops(bf16),
            "fp8_rowwise_fast_accum_tflops": tflops(raw),
            "fp8_engine_linear_tflops": tflops(engine), "fp8_speedup": round(bf16 / raw, 2),
            "fp8_engine_linear_speedup": round(bf16 / engine, 2)}


def measure_engine(ctx, spec: str) -> dict:
    """Build, load, warm up (compile), then two timed 1024² edits with peaks counted from
    after the warm-up and the engine's step time read right after them; then the two other
    geometries under error_on_recompile. Keeps the first timed edit's output for
    `deviation`."""
    import torch

    tier, _, memory_mode = spec.partition("@")
    out: dict = {}
    started = time.perf_counter()
    runner = Stock(ctx) if spec == "stock" else Ours(ctx, tier, memory_mode or "full")
    out["build_and_load_s"] = round(time.perf_counter() - started, 1)
    try:
        out |= _memory(ctx, "after_load")
        started = time.perf_counter()
        runner.warmup()
        runner.warmed = True
        out["warmup_compile_s"] = round(time.perf_counter() - started, 1)
        if hasattr(runner, "engine"):
            out["levers"] = runner.engine.info.extra.get("levers")
        _memory(ctx, "reset")  # peaks of the timed 1024² edits, not the warm-up's
        side, steps = ctx.size, ctx.steps
        with torch._dynamo.config.patch(error_on_recompile=True):
            out["runs"] = [timed_edit(runner, ctx, side, side, reference_image(side), steps)
                           for _ in range(2)]
            out |= _memory(ctx, "peak")
            out["step_s_engine"] = runner.steady()  # before the geometries below move it
            out["cuda_graphs_recorded"] = runner.graphs()
            ctx.latents[spec] = (runner.latents, runner.image)
            for width, height, ref in OTHER_GEOMETRIES:
                image = reference_image(side) if ref is None else \
                    reference_image(side).resize(ref)
                runner.run(width, height, image if ref else None, 4)
        out["no_recompile_after_warmup"] = True
        median = out["runs"][-1]["computed_forward_ms_median"]
        if ctx.device == "cuda" and median:
            tokens = ShapeCase(side, side, side, side).image_tokens
            floor = floor_seconds(tokens, tier in ("fp8", "turbo")) * 1000
            out["floor_fraction"] = round(floor / median, 3)
    finally:
        runner.close()
        gc.collect()
        if ctx.device == "cuda":
            torch.cuda.empty_cache()
    return out


def _memory(ctx, moment: str) -> dict:
    """after_load: what the engine holds; reset: peaks count from now; peak: the peaks."""
    if ctx.device != "cuda":
        return {}
    import torch

    if moment == "reset":
        torch.cuda.reset_peak_memory_stats()
        return {}
    if moment == "after_load":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        return {"after_load_alloc_gib": round(torch.cuda.memory_allocated() / 2**30, 2),
                "after_load_reserved_gib": round(torch.cuda.memory_reserved() / 2**30, 2)}
    return {"peak_alloc_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
            "peak_reserved_gib": round(torch.cuda.max_memory_reserved() / 2**30, 2)}


def deviation(ctx) -> dict:
    """Each engine's first timed edit against the exact tier's: relative L2 of the final
    latents, PSNR and SSIM of the decoded images (benchmarks/image_metrics.py)."""
    from image_metrics import describe

    exact = ctx.latents.get("exact")
    if exact is None:
        return {"skipped": "the exact tier did not run"}
    rows = {spec: describe(latents, image, *exact)
            for spec, (latents, image) in ctx.latents.items() if spec != "exact"}
    return {"vs_exact": rows, "note": RANDOM_WEIGHTS}


def memory_mode(ctx, mode: str) -> dict:
    """exact@mode under torch.cuda.set_per_process_memory_fraction(cap): a 1024² edit. The
    model is built on the GPU uncapped (fast random init), moved to CPU memory and the GPU
    emptied; then the cap is set and the engine places the model as the mode says."""
    import torch

    if ctx.device != "cuda":
        return {"skipped": "memory modes need CUDA"}
    torch._dynamo.reset()  # drop earlier engines' graphs (and what they keep alive)
    pipe = make_pipeline(ctx, device="cpu")
    gc.collect()
    torch.cuda.empty_cache()
    cap = {"24gb": 24, "16gb": 16}[mode] * 2**30
    torch.cuda.set_per_process_memory_fraction(cap / torch.cuda.get_device_properties(0)
                                               .total_memory)
    try:
        runner = Ours(ctx, "exact", mode, pipe=pipe)
        del pipe
        try:
            out = _memory(ctx, "after_load")
            runner.warmup()
            runner.warmed = True
            _memory(ctx, "reset")
            out["run"] = timed_edit(runner, ctx, ctx.size, ctx.size, reference_image(ctx.size),
                                    ctx.steps)
            return out | _memory(ctx, "peak") | {"cap_gib": cap / 2**30}
        finally:
            runner.close()
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
        gc.collect()
        torch.cuda.empty_cache()


def memory_plans(ctx) -> dict:
    """The meta-device memory plan of every mode (pipelines/memory/plan.py), to set beside
    the measured peaks."""
    import json

    import torch
    from bench_common import CONFIGS

    from pipelines.memory.plan import plan_memory

    configs = json.loads(CONFIGS.read_text())
    gpu = torch.cuda.get_device_properties(0).total_memory if ctx.device == "cuda" \
        else 141 * 2**30  # an H200's, for the CPU smoke run
    plans = {}
    for tier, mode in (("exact", "full"), ("fp8", "full"), ("turbo", "full"),
                       ("exact", "24gb"), ("fp8", "24gb"), ("exact", "16gb")):
        plans[f"{tier}@{mode}"] = plan_memory(configs, engine_plan(ctx, tier, mode),
                                              gpu).describe()
    return plans
