"""Step caches side by side: the turbo tier's whole-forward cache against diffusers' own
hooks (FirstBlockCache, TaylorSeerCache, MagCache), forwards saved against deviation.

Every configuration runs the same edit (stock FluxKontextPipeline, same model, seed and
inputs) with one cache on the transformer. Per configuration:

- transformer work: the transformer's matmul and attention FLOPs (torch's FlopCounterMode,
  counted under the transformer module) as a fraction of the uncached run's: what a step
  cache saves, whatever it skips (whole forwards, blocks, attention only);
- deviation from the uncached run: relative L2 of the final latents, PSNR and SSIM of the
  decoded image (benchmarks/image_metrics.py);
- whether it reads a value back to the host on every step (which defeats CUDA graphs: the
  replay would have to stop for the host at every step).

RANDOM WEIGHTS ARE NOT TRAINED WEIGHTS: adaptive caches (FirstBlockCache, MagCache) decide
from the model's own activations, which on a random model change differently from the real
one's; MagCache's magnitude ratios are calibrated here on this model, as its authors ask.

    python benchmarks/cache_comparison.py --write-results           # tiny model, CPU
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine_benchmark import GUIDANCE, PROMPT, SEED, reference_image
from image_metrics import describe

#: T5 tokens of the compared edit (the server pads to 512: see `edit`).
TEXT_TOKENS = 64
NOTE = ("Random weights are not trained weights: the deviations measure what each cache adds "
        "to this network's arithmetic, not image quality; adaptive caches decide from this "
        "random model's activations.")


@dataclass(frozen=True)
class Config:
    """One cache configuration: a label, how to install it, whether it syncs every step."""

    name: str
    kind: str  # "none", "ours", "fbc", "taylorseer", "taylorseer-lite", "mag"
    value: float = 0.0
    host_read_per_step: bool = False


def configs(steps: int) -> list[Config]:
    """The configurations compared: ours at three intervals, each diffusers hook at settings
    around its defaults and at matched forward counts."""
    return [
        Config("whole-forward (ours), interval 2", "ours", 2),
        Config("whole-forward (ours), interval 3 [turbo]", "ours", 3),
        Config("whole-forward (ours), interval 4", "ours", 4),
        Config("TaylorSeerCache lite, interval 3", "taylorseer-lite", 3),
        Config("TaylorSeerCache (attention only), interval 3", "taylorseer", 3),
        Config("FirstBlockCache 0.05", "fbc", 0.05, True),
        Config("FirstBlockCache 0.12", "fbc", 0.12, True),
        Config("FirstBlockCache 0.25", "fbc", 0.25, True),
        Config("MagCache 0.06", "mag", 0.06),
        Config("MagCache 0.12", "mag", 0.12),
        Config("MagCache 0.24", "mag", 0.24),
    ]


def exact_steps(steps: int) -> int:
    """Steps every cache keeps exact at the start: the turbo tier's first 25 %."""
    from pipelines.levers.plan import StepCacheSpec

    return StepCacheSpec().exact_steps(steps)


def install(pipe, config: Config, steps: int, ratios) -> None:
    """Put `config`'s cache on the pipeline's transformer."""
    import torch
    from diffusers import FirstBlockCacheConfig, MagCacheConfig, TaylorSeerCacheConfig

    from pipelines.levers.plan import StepCacheSpec
    from pipelines.levers.step_cache import enable_step_cache, prepare_step_cache

    transformer, warm = pipe.transformer, exact_steps(steps)
    if config.kind == "ours":
        enable_step_cache(transformer, StepCacheSpec(cache_interval=int(config.value)))
        prepare_step_cache(transformer, steps, pipe.scheduler)
    elif config.kind.startswith("taylorseer"):
        transformer.enable_cache(TaylorSeerCacheConfig(
            cache_interval=int(config.value), disable_cache_before_step=warm, max_order=1,
            taylor_factors_dtype=torch.float32, use_lite_mode=config.kind.endswith("lite")))
    elif config.kind == "fbc":
        transformer.enable_cache(FirstBlockCacheConfig(threshold=config.value))
    elif config.kind == "mag":
        transformer.enable_cache(MagCacheConfig(
            threshold=config.value, retention_ratio=warm / steps, num_inference_steps=steps,
            mag_ratios=ratios))


def run(checkpoint: Path, size: int, steps: int, config: Config | None, ratios=None):
    """(latents, image, transformer FLOPs) of one edit with `config`'s cache."""
    import torch
    from diffusers import FluxKontextPipeline
    from torch.utils.flop_counter import FlopCounterMode

    pipe = FluxKontextPipeline.from_pretrained(str(checkpoint))
    pipe.set_progress_bar_config(disable=True)
    if config is not None:
        install(pipe, config, steps, ratios)
    caught = {}

    def keep(_pipe, step, _t, kwargs):
        if step == steps - 1:
            caught["latents"] = kwargs["latents"].float().numpy()
        return kwargs

    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        image = edit(pipe, size, steps, keep)
    flops = sum(counter.get_flop_counts().get("FluxTransformer2DModel", {}).values())
    return caught["latents"], np.asarray(image), flops


def edit(pipe, size: int, steps: int, callback=None):
    """The compared edit: a `size`² output from a `size`² reference kept at its size (no
    snapping to ~1 MP) and TEXT_TOKENS text tokens (attention over 8 k tokens costs minutes
    per run on a CPU; the caches act on whole blocks or outputs, not on the length). Inside a
    cache context: FluxKontextPipeline sets none, and diffusers' stateful hooks need one."""
    import torch

    with pipe.transformer.cache_context("kontext"):
        return pipe(image=reference_image(size), prompt=PROMPT, width=size, height=size,
                    max_area=size * size, num_inference_steps=steps, guidance_scale=GUIDANCE,
                    generator=torch.Generator("cpu").manual_seed(SEED),
                    callback_on_step_end=callback, _auto_resize=False,
                    max_sequence_length=TEXT_TOKENS).images[0]


def calibrate_mag_ratios(checkpoint: Path, size: int, steps: int) -> list[float]:
    """MagCache's per-step magnitude ratios of this model, from its calibration mode (which
    prints them at the end of the run)."""
    import torch
    from diffusers import FluxKontextPipeline, MagCacheConfig

    pipe = FluxKontextPipeline.from_pretrained(str(checkpoint))
    pipe.set_progress_bar_config(disable=True)
    pipe.transformer.enable_cache(MagCacheConfig(calibrate=True, num_inference_steps=steps))
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), torch.inference_mode():
        edit(pipe, size, steps)
    found = re.findall(r"\[([0-9eE.,\s+-]+)\]", printed.getvalue())
    return [float(v) for v in found[-1].split(",")]


def compile_check(steps: int = 6) -> list[str]:
    """Each cache with the engine's compile (regional, fullgraph, dynamic; the eager
    backend: dynamo's tracing without a compiler), one short edit on the 1+1-block model:
    "runs" or dynamo's refusal."""
    import torch

    from pipelines.weights.tiny import write_tiny_checkpoint

    checkpoint = write_tiny_checkpoint(Path(tempfile.mkdtemp()) / "tiny")
    seen, rows = set(), []
    for config in configs(steps):
        if config.kind in seen:
            continue
        seen.add(config.kind)
        from diffusers import FluxKontextPipeline

        torch._dynamo.reset()
        pipe = FluxKontextPipeline.from_pretrained(str(checkpoint))
        pipe.set_progress_bar_config(disable=True)
        install(pipe, config, steps, [1.0] * steps)
        pipe.transformer.compile_repeated_blocks(fullgraph=True, dynamic=True, backend="eager")
        try:
            with torch.inference_mode():
                edit(pipe, 128, steps)
            verdict = "runs"
        except Exception as exc:  # what dynamo says is the finding
            verdict = f"fails: {type(exc).__name__}: {str(exc).splitlines()[0][:90]}"
        rows.append(f"| {config.name.split(',')[0].split(' 0.')[0]} | {verdict} |")
    torch._dynamo.reset()
    return ["| cache | with compile_repeated_blocks(fullgraph=True, dynamic=True) |",
            "|---|---|", *rows]


def main(argv: list[str] | None = None) -> int:
    """Run the uncached edit, then every configuration; print (and write) the table."""
    args = parse_args(argv)
    command = f"Command: `python benchmarks/cache_comparison.py {' '.join(argv or sys.argv[1:])}`"
    if args.compile_check:
        lines = [command, "", "Tiny random model (1 + 1 blocks), CPU, dynamo with the eager "
                 "backend, one 6-step 128² edit per cache.", "", *compile_check()]
        print("\n".join(lines))
        if args.write_results:
            from benchmarks_results import write_section

            write_section("Step caches with the engine's regional compile — tiny model, CPU",
                          lines)
        return 0
    from bench_common import environment

    from pipelines.weights.tiny import REAL_DEPTH, write_tiny_checkpoint

    checkpoint = write_tiny_checkpoint(Path(tempfile.mkdtemp()) / "deep", REAL_DEPTH)
    ref_latents, ref_image, ref_flops = run(checkpoint, args.size, args.steps, None)
    ratios = calibrate_mag_ratios(checkpoint, args.size, args.steps)
    lines = ["| cache | transformer work (of uncached) | forward-equivalents of "
             f"{args.steps} | latents rel. L2 | PSNR dB | SSIM | host read per step |",
             "|---|---|---|---|---|---|---|"]
    for config in configs(args.steps):
        if args.only and not re.search(args.only, config.name):
            continue
        print(f"== {config.name}", flush=True)
        latents, image, flops = run(checkpoint, args.size, args.steps, config, ratios)
        fraction = flops / ref_flops
        row = describe(latents, image, ref_latents, ref_image)
        lines.append(f"| {config.name} | {fraction:.1%} | {fraction * args.steps:.1f} | "
                     f"{row['relative_l2']:.2e} | {row['psnr_db']} | {row['ssim']:.4f} | "
                     f"{'yes (.item())' if config.host_read_per_step else 'no'} |")
        print(lines[-1], flush=True)
    header = [command, "", f"Environment: {environment('cpu')}", "",
              f"Tiny random FLUX.1 Kontext at the real depth (19 + 38 blocks, width 32), fp32, "
              f"{args.size}² output and reference, {TEXT_TOKENS} text tokens, {args.steps} "
              f"steps, seed {SEED}; "
              f"every cache keeps the first {exact_steps(args.steps)} steps exact (MagCache: "
              "retention ratio; FirstBlockCache has no such setting). MagCache ratios "
              "calibrated on this model.", "", f"**{NOTE}**", ""]
    print("\n".join(header + lines))
    if args.write_results:
        from benchmarks_results import write_section

        write_section("Step caches: ours vs diffusers' hooks — tiny model, CPU", header + lines)
    return 0


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256, help="output side")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--only", help="regex: run only the configurations it matches")
    parser.add_argument("--compile-check", action="store_true",
                        help="instead: does each cache run under the engine's compile?")
    parser.add_argument("--write-results", action="store_true")
    return parser.parse_args(argv)


if __name__ == "__main__":
    raise SystemExit(main())
