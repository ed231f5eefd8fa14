"""LoRA switching cost and per-step overhead, through the engine's own LoRA manager.

Builds rank-R LoRAs on every Linear of the transformer (the worst case: ai-toolkit and kohya
FLUX LoRAs target all of them), then measures, in one process:

  * switch, uncached: a LoRA never used before (disk read + diffusers' conversion + copy);
  * switch, cached: alternating between two LoRAs held in the adapter cache (copy only);
  * switch, scale only: the slot already holds the LoRA, only its scale changes;
  * per transformer step: no LoRA folder at all, slots off, 1 and 3 active LoRAs
    (CUDA events around every transformer forward on GPU, the host clock on CPU).

    # CPU smoke run on the tiny checkpoint (what RESULTS.md records today)
    python benchmarks/lora_benchmark.py --tiny --device cpu --write-results
    # the owed GPU run: full-size random checkpoint, the exact tier's plan (compile + warm-up)
    python benchmarks/lora_benchmark.py --full-size --rank 64 --size 1024x1024 --steps 8 \
        --write-results            # add --tier fp8 / --tier turbo for those tiers
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_common import StepClock, ensure_checkpoint, environment, synchronize

from pipelines.contract import EditRequest, LoraChoice, RunControl

PROMPT, SEED = "relight the scene with warm sunset light", 42
TINY_NOTE = ("Tiny checkpoint on a shared CPU (its Linears are 32–192 wide): these runs "
             "exercise the code and show the switch mechanics' host cost; the per-step "
             "ratios say nothing about the full-size model on a GPU, which is owed: "
             "`python benchmarks/lora_benchmark.py --full-size --rank 64 --size 1024x1024 "
             "--steps 8 --write-results`. \"no LoRA folder\" is a second engine measured "
             "after the others, not interleaved with them.")


def write_loras(folder: Path, config: dict, rank: int, count: int) -> list[str]:
    """`count` diffusers-layout LoRA files of `rank` on every Linear of a `config` transformer."""
    import torch
    from diffusers import FluxKontextPipeline, FluxTransformer2DModel

    with torch.device("meta"):
        skeleton = FluxTransformer2DModel.from_config(config)
    shapes = {name: module.weight.shape for name, module in skeleton.named_modules()
              if isinstance(module, torch.nn.Linear)}
    names = []
    for index in range(count):
        generator = torch.Generator().manual_seed(index)
        layers = {}
        for module, (out_features, in_features) in shapes.items():
            layers[f"{module}.lora_A.weight"] = (torch.randn(
                rank, in_features, generator=generator) * 0.01).to(torch.bfloat16)
            layers[f"{module}.lora_B.weight"] = (torch.randn(
                out_features, rank, generator=generator) * 0.01).to(torch.bfloat16)
        name = f"bench_{index}"
        FluxKontextPipeline.save_lora_weights(folder, transformer_lora_layers=layers,
                                              weight_name=f"{name}.safetensors")
        names.append(name)
    return names


def time_switches(manager, names: list[str], repeats: int) -> dict[str, float]:
    """Median ms of the three kinds of switch (names[0:2] get cached, names[2:] stay fresh)."""
    uncached = [manager.switch((LoraChoice(name),)).switch_seconds for name in names[2:]]
    cached, scale_only = [], []
    for index in range(repeats):
        cached.append(manager.switch((LoraChoice(names[index % 2]),)).switch_seconds)
    for index in range(repeats):
        scale = 0.5 + index / (2 * repeats)
        scale_only.append(manager.switch((LoraChoice(names[1], scale),)).switch_seconds)
    manager.reset()
    return {"uncached": statistics.median(uncached) * 1000,
            "cached": statistics.median(cached[2:]) * 1000,  # the first two fill the cache
            "scale only": statistics.median(scale_only) * 1000}


def step_ms(engine, variants: dict[str, tuple[LoraChoice, ...]], size: tuple[int, int],
            steps: int, repeats: int) -> dict[str, float]:
    """Median transformer-step ms per variant; variants take turns, so that machine noise
    (a shared CPU) falls on all of them alike."""
    clock = StepClock(cuda=engine.device == "cuda")
    hook = engine.pipe.transformer.register_forward_pre_hook(clock.mark)
    per_step: dict[str, list[float]] = {name: [] for name in variants}

    def edit(loras: tuple[LoraChoice, ...]) -> None:
        clock.marks.clear()
        engine.run(EditRequest(prompt=PROMPT, image=None, width=size[0], height=size[1],
                               steps=steps, guidance_scale=2.5, seed=SEED, loras=loras),
                   RunControl())
        clock.mark()
        synchronize(engine.device)

    try:
        for loras in variants.values():
            edit(loras)  # untimed: first use of this slot count
        for _ in range(repeats):
            for name, loras in variants.items():
                edit(loras)
                per_step[name] += clock.step_seconds()[:-1]  # the last includes the decode
    finally:
        hook.remove()
    return {name: statistics.median(times) * 1000 for name, times in per_step.items()}


def build_engine(args: argparse.Namespace, checkpoint: Path, lora_dir: Path | None):
    """The server's own engine for --tier (CUDA: its levers, compile, warm-up)."""
    from pipelines.engine.kontext import KontextEngine
    from pipelines.engine.options import EngineOptions, LoraOptions
    from pipelines.weights.source import resolve_weights

    engine = KontextEngine(resolve_weights(str(checkpoint)), EngineOptions(
        device=args.device, tier=args.tier, warmup_steps=1,
        loras=LoraOptions(lora_dir, max_rank=args.rank)))
    engine.load()
    if args.full_size:
        engine.warmup()
    return engine


def run(args: argparse.Namespace) -> list[str]:
    size = tuple(int(side) for side in args.size.split("x"))
    checkpoint = ensure_checkpoint(Path(args.checkpoint), tiny=not args.full_size,
                                   device=args.device)
    lora_dir = Path(tempfile.mkdtemp(prefix="lora-bench-"))
    engine = build_engine(args, checkpoint, lora_dir)
    config = dict(engine.pipe.transformer.config)
    names = write_loras(lora_dir, config, args.rank, count=2 + args.uncached)
    switches = time_switches(engine.loras, names, args.repeats * 4)
    variants = {"slots off": (), "1 LoRA": (LoraChoice(names[0]),),
                "3 LoRAs": tuple(LoraChoice(name, 0.5) for name in names[:3])}
    rows = step_ms(engine, variants, size, args.steps, args.repeats)
    plan = ", ".join(engine.plan.levers()) or "none"
    engine.close()
    if not args.skip_plain:
        plain = build_engine(args, checkpoint, None)
        rows = {**step_ms(plain, {"no LoRA folder": ()}, size, args.steps, args.repeats),
                **rows}
        plain.close()
    return report(args, switches, rows, plan)


def report(args, switches: dict[str, float], rows: dict[str, float], plan: str) -> list[str]:
    base = rows["slots off"]
    lines = [f"Command: `python benchmarks/lora_benchmark.py {' '.join(sys.argv[1:])}`", "",
             f"Environment: {environment(args.device)}", "",
             f"{'Full-size random' if args.full_size else 'Tiny random'} checkpoint, "
             f"LoRAs of rank {args.rank} on every Linear, engine levers: {plan}; "
             f"{args.size}, {args.steps} steps, median of {args.repeats} edits.", "",
             *([] if args.full_size else [TINY_NOTE, ""]),
             "| switch | ms (median) |", "|---|---|"]
    lines += [f"| {kind} | {ms:.1f} |" for kind, ms in switches.items()]
    lines += ["", "| LoRAs active | ms per transformer step | vs slots off |", "|---|---|---|"]
    lines += [f"| {kind} | {ms:.1f} | {ms / base - 1:+.1%} |" for kind, ms in rows.items()]
    return lines


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    scale = parser.add_mutually_exclusive_group()
    scale.add_argument("--tiny", action="store_true", help="the tiny checkpoint (default)")
    scale.add_argument("--full-size", action="store_true",
                       help="the full-size random checkpoint (GPU; built once, ~34 GB)")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--checkpoint", default=None,
                        help="where the benchmark checkpoint lives (built there once)")
    parser.add_argument("--tier", default="exact", choices=("exact", "fp8", "turbo"))
    parser.add_argument("--rank", type=int, default=64)
    parser.add_argument("--size", default="512x512")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--uncached", type=int, default=3, help="fresh LoRAs to time")
    parser.add_argument("--skip-plain", action="store_true",
                        help="skip the engine without a LoRA folder (saves a second load)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (1 steadies timings on a shared CPU)")
    parser.add_argument("--write-results", action="store_true")
    args = parser.parse_args(argv)
    if args.checkpoint is None:
        args.checkpoint = "./bench-checkpoint" if args.full_size else "/tmp/kontext-tiny-bench"
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    lines = run(args)
    print("\n".join(lines))
    if args.write_results:
        from benchmarks_results import write_section

        where = "full-size random checkpoint, GPU" if args.full_size \
            else "tiny-checkpoint CPU smoke run (NOT a GPU figure)"
        write_section(f"LoRA switching and per-step overhead (issue 12) — {where}", lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
