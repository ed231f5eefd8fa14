"""How far each lossy tier's output is from the exact tier's, on the same model and seed.

For every engine: the relative L2 error of the final latents (before the VAE decode) and
the PSNR of the decoded image, both against our exact tier. Stock diffusers is included
to show how far the exact tier itself is from stock (0 on CPU; kernel choice on GPU).

RANDOM WEIGHTS ARE NOT TRAINED WEIGHTS. These numbers say how much arithmetic noise a lever
adds to this network, not how an edit looks on the real model: check quality on the real
FLUX.1 Kontext [dev] weights yourself before relying on a lossy tier.

    python benchmarks/deviation_report.py --write-results
    # CPU smoke run: stock and the step-cache lever alone (fp8 needs CUDA)
    python benchmarks/deviation_report.py --tiny --device cpu --size 512x512 --steps 8
"""

from __future__ import annotations

import argparse
import gc
import math
import sys
from pathlib import Path
from unittest import mock

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_common import ensure_checkpoint, environment
from engine_benchmark import GUIDANCE, PROMPT, SEED, reference_image

WARNING = ("Random weights are not trained weights: these figures measure the arithmetic "
           "deviation a lever adds to this network, not image quality. Check quality on the "
           "real FLUX.1 Kontext [dev] weights yourself.")


def run_ours(checkpoint: Path, device: str, spec: str, size: tuple[int, int], steps: int):
    """(latents, image) from our engine; `spec` is a tier[@memory_mode] or `cpu-step-cache`."""
    from pipelines.contract import EditRequest, RunControl
    from pipelines.engine.kontext import KontextEngine
    from pipelines.engine.options import EngineOptions
    from pipelines.levers.plan import EnginePlan, StepCacheSpec
    from pipelines.weights.source import resolve_weights

    plan = None
    tier, _, memory_mode = spec.partition("@")
    if spec == "cpu-step-cache":  # the turbo tier's cache lever alone, on CPU
        plan = EnginePlan(tier="turbo", memory_mode="full", device="cpu", dtype="float32",
                          attention_backend="native", step_cache=StepCacheSpec())
        tier = "turbo"
    engine = KontextEngine(resolve_weights(str(checkpoint)), EngineOptions(
        device=device, tier=tier, memory_mode=memory_mode or "full", plan=plan, warmup_steps=2))
    engine.load()
    try:
        engine.warmup()
        width, height = size
        request = EditRequest(PROMPT, reference_image(), width, height, steps, GUIDANCE, SEED)
        with mock.patch.object(engine, "_decode", wraps=engine._decode) as decode:
            result = engine.run(request, RunControl())
        latents = decode.call_args.args[0].float().cpu().numpy()
        return latents, np.asarray(result.image)
    finally:
        import torch

        engine.close()
        torch._dynamo.reset()  # the next engine compiles its own graphs


def run_stock(checkpoint: Path, device: str, size: tuple[int, int], steps: int):
    """(latents, image) from stock diffusers; latents caught at the last step's callback."""
    import torch
    from diffusers import FluxKontextPipeline

    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    pipe = FluxKontextPipeline.from_pretrained(str(checkpoint), dtype=dtype).to(device)
    pipe.set_progress_bar_config(disable=True)
    caught = {}

    def keep(_pipe, _step, _t, kwargs):
        caught["latents"] = kwargs["latents"].float().cpu().numpy()
        return kwargs

    width, height = size
    image = pipe(image=reference_image(), prompt=PROMPT, width=width, height=height,
                 max_area=width * height, num_inference_steps=steps, guidance_scale=GUIDANCE,
                 generator=torch.Generator("cpu").manual_seed(SEED),
                 callback_on_step_end=keep).images[0]
    return caught["latents"], np.asarray(image)


def compare(latents, image, ref_latents, ref_image) -> tuple[str, str, str]:
    """(relative latent error, image PSNR in dB, finite?) against the exact tier."""
    finite = bool(np.isfinite(latents).all())
    rel = np.linalg.norm(latents - ref_latents) / max(np.linalg.norm(ref_latents), 1e-30)
    mse = np.mean((image.astype(np.float64) - ref_image.astype(np.float64)) ** 2)
    psnr = "∞ (identical)" if mse == 0 else f"{10 * math.log10(255**2 / mse):.1f}"
    return f"{rel:.2e}", psnr, "yes" if finite else "NO (NaN/inf)"


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=Path("bench-checkpoint"))
    parser.add_argument("--tiny", action="store_true", help="tiny checkpoint (smoke run)")
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--engines", default=None,
                        help="comma-separated; default: stock,fp8,turbo,exact@24gb on cuda, "
                        "stock,cpu-step-cache on cpu")
    parser.add_argument("--size", default="1024x1024")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--write-results", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run exact, then every other engine, and print the deviation table."""
    from pipelines.errors import InvalidInput

    args = parse_args(argv)
    default = "stock,fp8,turbo,exact@24gb" if args.device == "cuda" else "stock,cpu-step-cache"
    engines = (args.engines or default).split(",")
    size = tuple(int(v) for v in args.size.split("x"))
    checkpoint = ensure_checkpoint(args.checkpoint, args.tiny, args.device)
    ref_latents, ref_image = run_ours(checkpoint, args.device, "exact", size, args.steps)
    lines = ["| engine | relative L2 error of final latents | image PSNR vs exact (dB) | "
             "finite |", "|---|---|---|---|"]
    for spec in engines:
        print(f"== {spec}", flush=True)
        try:
            latents, image = (run_stock(checkpoint, args.device, size, args.steps)
                              if spec == "stock"
                              else run_ours(checkpoint, args.device, spec, size, args.steps))
        except InvalidInput as exc:
            lines.append(f"| {spec} | refused: {exc} | | |")
            continue
        lines.append(f"| {spec} | " + " | ".join(compare(latents, image, ref_latents,
                                                         ref_image)) + " |")
        gc.collect()
    env = environment(args.device)
    header = [f"Command: `python benchmarks/deviation_report.py {' '.join(sys.argv[1:])}`", "",
              f"Environment: {env}", "", f"Size {args.size}, {args.steps} steps, seed {SEED}, "
              "reference: a 1024² synthetic gradient image.", "", f"**{WARNING}**", ""]
    print("\n".join(header + lines))
    if args.write_results:
        from benchmarks_results import write_section

        kind = "tiny-checkpoint CPU smoke run" if args.tiny else "full-size random-weight model"
        write_section(f"Deviation of lossy tiers from the exact tier — {kind}", header + lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
