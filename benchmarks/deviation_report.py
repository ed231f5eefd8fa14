"""How far each lossy tier's output is from the exact tier's, on the same model and seed.

For every engine: the relative L2 error of the final latents (before the VAE decode), the
PSNR and the SSIM of the decoded image, all against our exact tier. Stock diffusers is included
to show how far the exact tier itself is from stock (0 on CPU; kernel choice on GPU).

RANDOM WEIGHTS ARE NOT TRAINED WEIGHTS. These numbers say how much arithmetic noise a lever
adds to this network, not how an edit looks on the real model: check quality on the real
FLUX.1 Kontext [dev] weights yourself before relying on a lossy tier.

    python benchmarks/deviation_report.py --write-results
    # CPU: every lossy tier rehearsed on the tiny model, in bf16, against the exact tier
    python benchmarks/deviation_report.py --tiny --device cpu --size 256x256 --steps 30
"""

from __future__ import annotations

import argparse
import functools
import gc
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


#: The lossy tiers rehearsed on CPU (the server's H100 plan moved to the CPU, uncompiled,
#: torchao's float8 GPU check bypassed: torch's CPU _scaled_mm computes float8 matmuls), and
#: variants beside them: flux-fast's choice of fp8 linears (all), fp8 attention's
#: quantisation (emulated: FA3 is CUDA-only) with the fp8 tier and alone, and the floor.
CPU_REHEARSALS = ("exact+1ulp", "fp8", "fp8-all-linears", "fp8+fp8-attention",
                  "exact+fp8-attention", "turbo", "exact@24gb")
#: The table's floor: the exact tier with one weight of the transformer one ulp off. The
#: sampling carries even that difference through 30 steps; a lever's row near this one
#: cannot be told from rounding.
NUDGED = "+1ulp"

#: The tier each variant varies: its row also gives its distance from that tier's output.
#: Two outputs can lie at the same distance from the exact tier's and still differ from each
#: other (fp8 and fp8+fp8-attention did, at 30 steps: 4.43e-3 both, 3.2e-3 apart).
VARIES = {"fp8-all-linears": "fp8", "fp8+fp8-attention": "fp8"}  # the others: vs exact


def rehearsal_plan(spec: str):
    """The H100 plan of `spec` (a CPU_REHEARSALS name) on the CPU, in bf16."""
    import dataclasses

    from pipelines.levers.plan import Capabilities, plan_engine

    tier, _, mode = spec.split("+")[0].removesuffix("-all-linears").partition("@")
    fp8_attention = spec.endswith("+fp8-attention")
    # With FA3 in the capabilities when fp8 attention is rehearsed: the plan's notes (logged,
    # and in EngineInfo) then do not say that fp8 attention is off in the engine that has it.
    h100 = Capabilities(cuda=True, compute_capability=(9, 0), torchao=True,
                        flash_attn_3=fp8_attention)
    plan = plan_engine(tier, mode or "full", "cuda", h100)
    return dataclasses.replace(
        plan, device="cpu", attention_backend="native", compile=None, cuda_graphs=None,
        text_encoder_offload="none", fp8_attention=fp8_attention)


def run_ours(checkpoint: Path, device: str, spec: str, size: tuple[int, int], steps: int):
    """(latents, image) from our engine; `spec` is a tier[@memory_mode], or on CPU the exact
    tier in bf16 ("exact") or one of CPU_REHEARSALS."""
    import contextlib
    import re

    from pipelines.contract import EditRequest, RunControl
    from pipelines.engine.kontext import KontextEngine
    from pipelines.engine.options import EngineOptions
    from pipelines.levers import quantize
    from pipelines.weights.source import resolve_weights

    plan, tier, _, memory_mode = None, *spec.partition("@")
    keep = contextlib.nullcontext()
    if device == "cpu":
        plan = rehearsal_plan(spec)
        _allow_cpu_float8()
        if spec == "fp8-all-linears":  # flux-fast's choice: no linear kept in bf16
            keep = mock.patch.object(quantize, "KEEP_BF16", re.compile(r"(?!)"))
    factory = None
    if spec.endswith(NUDGED):
        factory = functools.partial(nudged_pipeline, checkpoint, plan.dtype if plan else
                                    "bfloat16")
    with keep:
        engine = KontextEngine(resolve_weights(str(checkpoint)), EngineOptions(
            device=device, tier=tier, memory_mode=memory_mode or "full", plan=plan,
            warmup_steps=2, warmup_size=size, pipeline_factory=factory))
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


def nudged_pipeline(checkpoint: Path, dtype: str):
    """The checkpoint's pipeline in `dtype` with one weight of the transformer (the first of
    `proj_out`, which every tier keeps in bf16) moved by one ulp, towards +inf."""
    import torch

    from pipelines.weights.source import load_pipeline, resolve_weights

    pipe = load_pipeline(resolve_weights(str(checkpoint)), getattr(torch, dtype))
    first = pipe.transformer.proj_out.weight.data.view(-1)[:1]
    with torch.no_grad():
        first.copy_(torch.nextafter(first, torch.full_like(first, float("inf"))))
    return pipe


def _allow_cpu_float8() -> None:
    """torchao checks for a float8 GPU; on CPU torch's _scaled_mm computes float8 matmuls."""
    from torchao.quantization import quant_api

    quant_api._check_hardware_support = lambda granularity: None


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


def compare(latents, image, ref_latents, ref_image) -> tuple[str, str, str, str]:
    """(relative latent error, image PSNR in dB, SSIM, finite?) against the exact tier."""
    from image_metrics import describe

    row = describe(latents, image, ref_latents, ref_image)
    psnr = "∞ (identical)" if row["psnr_db"] is None else f"{row['psnr_db']:.1f}"
    return (f"{row['relative_l2']:.2e}", psnr, f"{row['ssim']:.4f}",
            "yes" if row["finite"] else "NO (NaN/inf)")


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=Path("bench-checkpoint"))
    parser.add_argument("--tiny", action="store_true", help="tiny checkpoint (smoke run)")
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--engines", default=None,
                        help="comma-separated; default: stock,fp8,turbo,exact@24gb on cuda, "
                        f"{','.join(CPU_REHEARSALS)} on cpu (the exact tier in bf16 there)")
    parser.add_argument("--size", default="1024x1024")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--write-results", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run exact, then every other engine, and print the deviation table."""
    args = parse_args(argv)
    default = "stock,fp8,turbo,exact@24gb" if args.device == "cuda" else ",".join(CPU_REHEARSALS)
    engines = (args.engines or default).split(",")
    size = tuple(int(v) for v in args.size.split("x"))
    checkpoint = ensure_checkpoint(args.checkpoint, args.tiny, args.device)
    lines = table(engines, checkpoint, args.device, size, args.steps)
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


def table(engines: list[str], checkpoint: Path, device: str, size: tuple[int, int],
          steps: int) -> list[str]:
    """The deviation table's lines: the exact tier first, then one row per engine; a variant
    (VARIES) also against its own tier's output when that tier ran before it."""
    from image_metrics import relative_l2

    from pipelines.errors import InvalidInput

    ref_latents, ref_image = run_ours(checkpoint, device, "exact", size, steps)
    lines = ["| engine | relative L2 error of final latents | image PSNR vs exact (dB) | "
             "SSIM vs exact | finite | relative L2 vs the tier it varies |",
             "|---|---|---|---|---|---|"]
    latents_of = {}
    for spec in engines:
        print(f"== {spec}", flush=True)
        try:
            latents, image = (run_stock(checkpoint, device, size, steps) if spec == "stock"
                              else run_ours(checkpoint, device, spec, size, steps))
        except InvalidInput as exc:
            lines.append(f"| {spec} | refused: {exc} | | | | |")
            continue
        latents_of[spec] = latents
        base = VARIES.get(spec)
        versus = (f"{relative_l2(latents, latents_of[base]):.2e} (vs {base})"
                  if base in latents_of else "—")
        lines.append(f"| {spec} | " + " | ".join(compare(latents, image, ref_latents,
                                                         ref_image)) + f" | {versus} |")
        gc.collect()
    return lines


if __name__ == "__main__":
    raise SystemExit(main())
