"""The engines benchmarks/gpu_run.py times: stock diffusers and our KontextEngine on the same
random model, with one timed edit each way (per-forward CUDA events, no host sync)."""

from __future__ import annotations

import dataclasses
import time
from unittest import mock

import numpy as np
from bench_common import StepClock, build_random_pipeline
from engine_benchmark import GUIDANCE, PROMPT, SEED, reference_image


def make_pipeline(ctx, device: str | None = None):
    """The random model, rebuilt from the same seed (identical weights), on `device`
    (default: the run's device)."""
    if ctx.tiny:
        import torch

        from pipelines.weights.tiny import build_tiny_pipeline

        pipe = build_tiny_pipeline()
        for component in pipe.components.values():
            if hasattr(component, "eval"):
                component.eval()
        return pipe.to(device or ctx.device, torch.bfloat16)
    pipe = build_random_pipeline(ctx.device, seed=0)
    return pipe if device is None else pipe.to(device)


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


def timed_edit(runner, ctx, width, height, image, steps) -> dict:
    """One edit with a CUDA-event (or host) mark around every transformer forward; a step
    cache's computed and predicted forwards are reported apart."""
    clock = StepClock(ctx.device == "cuda")
    transformer = runner.transformer
    handles = [transformer.register_forward_pre_hook(clock.mark),
               transformer.register_forward_hook(clock.mark)]
    sync(ctx)
    started = time.perf_counter()
    try:
        runner.run(width, height, image, steps)
        sync(ctx)
    finally:
        for handle in handles:
            handle.remove()
    forwards = clock.step_seconds()[::2]  # pre→post of each forward; odd spans are the gaps
    schedule = runner.schedule()
    computed = [s for i, s in enumerate(forwards) if i >= len(schedule) or schedule[i]]
    predicted = [s for i, s in enumerate(forwards) if i < len(schedule) and not schedule[i]]
    return {"e2e_s": round(time.perf_counter() - started, 3), "forwards": len(forwards),
            "computed_forwards": len(computed),
            "computed_forward_ms_median": _median_ms(computed),
            "predicted_forward_ms_median": _median_ms(predicted)}


def _median_ms(spans: list[float]) -> float | None:
    return round(float(np.median(spans)) * 1000, 2) if spans else None


def sync(ctx) -> None:
    """Wait for the device (CUDA), so that host clocks cover its work."""
    if ctx.device == "cuda":
        import torch

        torch.cuda.synchronize()


class Stock:
    """Stock diffusers on the same random model; the final latents are kept by reference
    at the last step and read after the edit (no host sync inside the loop)."""

    def __init__(self, ctx) -> None:
        self.ctx, self.pipe = ctx, make_pipeline(ctx)
        self.pipe.set_progress_bar_config(disable=True)
        self.transformer, self.latents, self.image = self.pipe.transformer, None, None

    def warmup(self) -> None:
        self.run(self.ctx.size, self.ctx.size, reference_image(self.ctx.size), 2)

    def run(self, width, height, image, steps) -> None:
        import torch

        kept = {}

        def keep(_pipe, step, _t, kwargs):
            if step == steps - 1:
                kept["latents"] = kwargs["latents"]
            return kwargs

        with torch.inference_mode():
            out = self.pipe(image=image, prompt=PROMPT, width=width, height=height,
                            max_area=width * height, num_inference_steps=steps,
                            guidance_scale=GUIDANCE, callback_on_step_end=keep,
                            generator=torch.Generator("cpu").manual_seed(SEED)).images[0]
        self.keep(kept["latents"], out)

    def keep(self, latents, image) -> None:
        """The first timed edit's output, for the deviation step."""
        if self.latents is None and self.image is None and self.warmed:
            self.latents = latents.float().cpu().numpy()
            self.image = np.asarray(image)

    warmed = False

    def schedule(self) -> tuple[bool, ...]:
        return ()

    def steady(self):
        return None

    def graphs(self) -> int:
        """CUDA graphs the engine recorded (pipelines/levers/cuda_graphs.py)."""
        from pipelines.levers.cuda_graphs import recorded_graphs

        return recorded_graphs(self.transformer)

    def close(self) -> None:
        self.pipe = self.transformer = None


class Ours(Stock):
    """Our KontextEngine with the server's plan, on the same random model."""

    def __init__(self, ctx, tier: str, memory_mode: str, pipe=None) -> None:
        from pipelines.engine.kontext import KontextEngine
        from pipelines.engine.options import EngineOptions
        from pipelines.weights.source import WeightsSource

        self.ctx, self.latents, self.image = ctx, None, None
        source = WeightsSource("folder", "random full-size model, seed 0")
        self.engine = KontextEngine(source, EngineOptions(
            device=ctx.device, plan=engine_plan(ctx, tier, memory_mode), warmup_steps=2,
            warmup_size=(ctx.size, ctx.size),
            pipeline_factory=(lambda: pipe) if pipe is not None else lambda: make_pipeline(ctx)))
        self.engine.load()
        self.transformer = self.engine.pipe.transformer

    def warmup(self) -> None:
        self.engine.warmup()

    def run(self, width, height, image, steps) -> None:
        from pipelines.contract import EditRequest, RunControl

        request = EditRequest(PROMPT, image, width, height, steps, GUIDANCE, SEED)
        with mock.patch.object(self.engine, "_decode", wraps=self.engine._decode) as decode:
            result = self.engine.run(request, RunControl())
        self.keep(decode.call_args.args[0], result.image)

    def schedule(self) -> tuple[bool, ...]:
        from pipelines.levers.step_cache import current_schedule

        return current_schedule(self.transformer)

    def steady(self):
        return round(self.engine.steady_step_seconds() or 0.0, 4)

    def close(self) -> None:
        self.engine.close()
        self.engine = self.transformer = None
