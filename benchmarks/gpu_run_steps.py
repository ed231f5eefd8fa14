"""The measuring steps of benchmarks/gpu_run.py; each returns a JSON-able dict."""

from __future__ import annotations

import dataclasses
import gc
import time
from unittest import mock

import numpy as np
from bench_common import StepClock, build_random_pipeline, environment, floor_seconds
from engine_benchmark import GUIDANCE, PROMPT, SEED, reference_image

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
    """bf16 vs float8 row-wise GEMM at the MLP's shape: TFLOP/s."""
    import torch

    from pipelines.levers.attention import median_seconds

    m, k, n = (8704, 3072, 12288) if not ctx.tiny else (256, 128, 512)
    a = torch.randn(m, k, device=ctx.device, dtype=torch.bfloat16)
    b = torch.randn(n, k, device=ctx.device, dtype=torch.bfloat16)
    a8, b8 = a.to(torch.float8_e4m3fn), b.to(torch.float8_e4m3fn)
    scale_a = torch.ones(m, 1, device=ctx.device)
    scale_b = torch.ones(1, n, device=ctx.device)
    bf16 = median_seconds(lambda: a @ b.t(), ctx.device)
    fp8 = median_seconds(lambda: torch._scaled_mm(a8, b8.t(), scale_a=scale_a,
                                                  scale_b=scale_b, out_dtype=torch.bfloat16),
                         ctx.device)
    flop = 2 * m * k * n
    return {"shape_mkn": [m, k, n], "bf16_tflops": round(flop / bf16 / 1e12, 1),
            "fp8_rowwise_tflops": round(flop / fp8 / 1e12, 1), "fp8_speedup": round(bf16 / fp8, 2)}


def make_pipeline(ctx, device: str | None = None):
    """The random model, rebuilt from the same seed (identical weights), on `device`."""
    if ctx.tiny:
        from pipelines.weights.tiny import build_tiny_pipeline

        pipe = build_tiny_pipeline()
        for component in pipe.components.values():
            if hasattr(component, "eval"):
                component.eval()
        return pipe.to(dtype=_dtype()) if device is None else pipe.to(device, _dtype())
    pipe = build_random_pipeline(ctx.device, seed=0)
    return pipe if device is None else pipe.to(device)


def _dtype():
    import torch

    return torch.bfloat16


def engine_plan(ctx, tier: str, memory_mode: str = "full"):
    """The server's plan; on the CPU smoke run, the H100 plan moved to the CPU."""
    from pipelines.levers.plan import Capabilities, detect_capabilities, plan_engine

    if ctx.device == "cuda":
        return plan_engine(tier, memory_mode, "cuda", detect_capabilities())
    plan = plan_engine(tier, memory_mode, "cuda", Capabilities(cuda=True, torchao=True,
                                                                compute_capability=(9, 0)))
    compile_spec = plan.compile and dataclasses.replace(plan.compile, backend="eager")
    return dataclasses.replace(plan, device="cpu", attention_backend="native",
                               compile=compile_spec)


def timed_edit(run, transformer, ctx, width, height, image, steps) -> dict:
    """One edit with a CUDA-event (or host) mark around every transformer forward."""
    clock = StepClock(ctx.device == "cuda")
    handles = [transformer.register_forward_pre_hook(clock.mark),
               transformer.register_forward_hook(clock.mark)]
    _sync(ctx)
    started = time.perf_counter()
    try:
        run(width, height, image, steps)
        _sync(ctx)
    finally:
        for handle in handles:
            handle.remove()
    spans = clock.step_seconds()
    forwards = spans[::2]  # pre→post of each forward; odd spans are the gaps
    return {"e2e_s": round(time.perf_counter() - started, 3), "forwards": len(forwards),
            "forward_ms_median": round(float(np.median(forwards)) * 1000, 2) if forwards
            else None}


def _sync(ctx) -> None:
    if ctx.device == "cuda":
        import torch

        torch.cuda.synchronize()


def measure_engine(ctx, spec: str) -> dict:
    """Build, load, warm up (compile), then two timed 1024² edits and the two other
    geometries under error_on_recompile; keeps the first edit's latents for `deviation`."""
    import torch

    tier, _, memory_mode = spec.partition("@")
    out: dict = {}
    started = time.perf_counter()
    runner = _Stock(ctx) if spec == "stock" else _Ours(ctx, tier,
                                                                       memory_mode or "full")
    out["build_and_load_s"] = round(time.perf_counter() - started, 1)
    try:
        out |= runner.memory()
        started = time.perf_counter()
        runner.warmup()
        out["warmup_compile_s"] = round(time.perf_counter() - started, 1)
        side, steps = ctx.size, ctx.steps
        with torch._dynamo.config.patch(error_on_recompile=True):
            out["runs"] = [timed_edit(runner.run, runner.transformer, ctx, side, side,
                                      reference_image(side), steps) for _ in range(2)]
            ctx.latents[spec] = runner.latents
            for width, height, ref in OTHER_GEOMETRIES:
                image = reference_image(side) if ref is None else \
                    reference_image(side).resize(ref)
                runner.run(width, height, image if ref else None, 4)
        out["no_recompile_after_warmup"] = True
        out |= runner.memory(peak=True)
        out["step_s_engine"] = runner.steady()
        tokens = ShapeCase(side, side, side, side).image_tokens
        if ctx.device == "cuda" and out["runs"][0]["forward_ms_median"]:
            floor = floor_seconds(tokens, tier in ("fp8", "turbo")) * 1000
            out["floor_fraction"] = round(floor / out["runs"][0]["forward_ms_median"], 3)
    finally:
        runner.close()
        gc.collect()
        if ctx.device == "cuda":
            torch.cuda.empty_cache()
    return out


class _Stock:
    """Stock diffusers on the same random model; latents caught at the last step."""

    def __init__(self, ctx) -> None:
        self.ctx, self.pipe = ctx, make_pipeline(ctx)
        self.pipe.set_progress_bar_config(disable=True)
        self.transformer, self.latents = self.pipe.transformer, None

    def warmup(self) -> None:
        self.run(self.ctx.size, self.ctx.size, reference_image(self.ctx.size), 2)

    def run(self, width, height, image, steps) -> None:
        import torch

        def keep(_pipe, _step, _t, kwargs):
            self.latents = kwargs["latents"].float().cpu().numpy()
            return kwargs

        with torch.inference_mode():
            self.pipe(image=image, prompt=PROMPT, width=width, height=height,
                      max_area=width * height, num_inference_steps=steps,
                      guidance_scale=GUIDANCE, callback_on_step_end=keep,
                      generator=torch.Generator("cpu").manual_seed(SEED))

    def memory(self, peak: bool = False) -> dict:
        return _memory(self.ctx, peak)

    def steady(self):
        return None

    def close(self) -> None:
        self.pipe = self.transformer = None


class _Ours(_Stock):
    """Our KontextEngine with the server's plan, on the same random model."""

    def __init__(self, ctx, tier: str, memory_mode: str, device: str | None = None) -> None:
        from pipelines.engine.kontext import KontextEngine
        from pipelines.engine.options import EngineOptions
        from pipelines.weights.source import WeightsSource

        self.ctx, self.latents = ctx, None
        source = WeightsSource("folder", "random full-size model, seed 0")
        self.engine = KontextEngine(source, EngineOptions(
            device=ctx.device, plan=engine_plan(ctx, tier, memory_mode), warmup_steps=2,
            warmup_size=(ctx.size, ctx.size), pipeline_factory=lambda: make_pipeline(ctx, device)))
        self.engine.load()
        self.transformer = self.engine.pipe.transformer

    def warmup(self) -> None:
        self.engine.warmup()

    def run(self, width, height, image, steps) -> None:
        from pipelines.contract import EditRequest, RunControl

        request = EditRequest(PROMPT, image, width, height, steps, GUIDANCE, SEED)
        with mock.patch.object(self.engine, "_decode", wraps=self.engine._decode) as decode:
            self.result = self.engine.run(request, RunControl())
        if self.latents is None:
            self.latents = decode.call_args.args[0].float().cpu().numpy()

    def steady(self):
        return round(self.engine.steady_step_seconds() or 0.0, 4)

    def close(self) -> None:
        self.engine.close()
        self.engine = self.transformer = None


def _memory(ctx, peak: bool) -> dict:
    if ctx.device != "cuda":
        return {}
    import torch

    if not peak:  # after load: what the engine holds, then peaks count from here
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        return {"after_load_alloc_gib": round(torch.cuda.memory_allocated() / 2**30, 2),
                "after_load_reserved_gib": round(torch.cuda.memory_reserved() / 2**30, 2)}
    return {"peak_alloc_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
            "peak_reserved_gib": round(torch.cuda.max_memory_reserved() / 2**30, 2)}


def deviation(ctx) -> dict:
    """Relative L2 error of each engine's final latents against the exact tier's."""
    exact = ctx.latents.get("exact")
    if exact is None:
        return {"skipped": "the exact tier did not run"}
    rows = {}
    for spec, latents in ctx.latents.items():
        if spec != "exact":
            error = np.linalg.norm(latents - exact) / max(np.linalg.norm(exact), 1e-30)
            rows[spec] = {"relative_l2": float(f"{error:.3e}"),
                          "finite": bool(np.isfinite(latents).all())}
    return {"vs_exact": rows, "note": RANDOM_WEIGHTS}


def memory_mode(ctx, mode: str) -> dict:
    """exact@mode under torch.cuda.set_per_process_memory_fraction(cap): a 1024² edit."""
    import torch

    if ctx.device != "cuda":
        return {"skipped": "memory modes need CUDA"}
    torch._dynamo.reset()  # drop earlier engines' graphs (and what they keep alive)
    gc.collect()
    torch.cuda.empty_cache()
    cap = {"24gb": 24, "16gb": 16}[mode] * 2**30
    torch.cuda.set_per_process_memory_fraction(cap / torch.cuda.get_device_properties(0)
                                               .total_memory)
    try:
        runner = _Ours(ctx, "exact", mode, device="cpu")
        try:
            out = runner.memory()
            runner.warmup()
            out["run"] = timed_edit(runner.run, runner.transformer, ctx, ctx.size, ctx.size,
                                    reference_image(ctx.size), ctx.steps)
            return out | runner.memory(peak=True) | {"cap_gib": cap / 2**30}
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
