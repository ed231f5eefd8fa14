"""Stock diffusers vs our engine tiers, in one process and one run, on the same inputs.

For each engine (stock FluxKontextPipeline in bf16, then each `tier@memory_mode` loaded
through the server's own KontextEngine) and each size: one untimed warm-up edit, then
`--repeats` timed edits; prints the median end-to-end latency, the per-step time (CUDA
events around every transformer forward), the speed-up over stock at that size, the
fraction of the hardware floor (performance.md: 165 TFLOP per step at 1024²), and peak
GPU memory. Engines run one after another, each unloaded before the next.

    # the GPU table (builds ./bench-checkpoint once: ~34 GB of random bf16 weights)
    python benchmarks/engine_benchmark.py --write-results
    # CPU smoke run of the same code on the tiny checkpoint (not a performance figure)
    python benchmarks/engine_benchmark.py --tiny --device cpu --sizes 512x512 --steps 4
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_common import (
    StepClock,
    ensure_checkpoint,
    environment,
    floor_seconds,
    synchronize,
)

from pipelines.engine.warmup import ShapeCase

DEFAULT_ENGINES = "stock,exact,fp8,turbo,exact@24gb,fp8@24gb,exact@16gb"
PROMPT, SEED, GUIDANCE = "replace the sky with a stormy one", 42, 2.5
TINY_NOTE = ("Tiny random checkpoint on a shared CPU: stock and exact run the same code here "
             "(no levers on CPU), so any difference between them is machine noise; the "
             "refusals are the GPU tiers' startup errors on a machine without CUDA.")


@dataclass
class Row:
    """One engine at one size."""

    engine: str
    size: str
    steps: int
    e2e_s: float | None = None
    step_ms: float | None = None
    speedup: float | None = None
    floor_fraction: float | None = None
    peak_alloc_gib: float | None = None
    peak_reserved_gib: float | None = None
    levers: str = ""
    refused: str = ""


def reference_image(side: int = 1024) -> Image.Image:
    """The same ~1 MP reference for every engine (snaps to the 1024² Kontext bucket)."""
    gradient = Image.linear_gradient("L").resize((side, side))
    return Image.merge("RGB", (gradient, gradient.rotate(90), gradient.rotate(180)))


class StockRunner:
    """Stock diffusers, bf16 (fp32 on CPU), defaults except the exact-size arguments."""

    name = "stock"

    def __init__(self, checkpoint: Path, device: str) -> None:
        import torch
        from diffusers import FluxKontextPipeline

        dtype = torch.bfloat16 if device == "cuda" else torch.float32
        self.pipe = FluxKontextPipeline.from_pretrained(str(checkpoint), dtype=dtype)
        self.pipe.to(device)
        self.pipe.set_progress_bar_config(disable=True)
        self.transformer, self.levers, self.fp8 = self.pipe.transformer, "none", False

    def warmup(self) -> None:
        """Stock has nothing to compile; the per-size warm-up edit covers lazy init."""

    def run(self, image, width: int, height: int, steps: int) -> None:
        import torch

        self.pipe(image=image, prompt=PROMPT, width=width, height=height,
                  max_area=width * height, num_inference_steps=steps, guidance_scale=GUIDANCE,
                  generator=torch.Generator("cpu").manual_seed(SEED))

    def close(self) -> None:
        self.pipe = self.transformer = None


#: `~lever` in an engine spec drops that lever from the tier's plan (ablation).
ABLATIONS = {"compile": {"compile": None}, "fuse_qkv": {"fuse_qkv": False},
             "attention": {"attention_backend": "native"}, "step_cache": {"step_cache": None}}


def ablated_plan(tier: str, memory_mode: str, device: str, drop: list[str]):
    """The server's plan for (tier, memory mode), minus the levers named in `drop`."""
    import dataclasses

    from pipelines.levers.plan import detect_capabilities, plan_engine

    plan = plan_engine(tier, memory_mode, device, detect_capabilities())
    for lever in drop:
        plan = dataclasses.replace(plan, **ABLATIONS[lever])
    return plan


class EngineRunner:
    """Our KontextEngine at one tier and memory mode, loaded the way the server loads it."""

    def __init__(self, checkpoint: Path, device: str, spec: str) -> None:
        from pipelines.engine.kontext import KontextEngine
        from pipelines.engine.options import EngineOptions
        from pipelines.weights.source import resolve_weights

        base, *drop = spec.split("~")
        tier, _, memory_mode = base.partition("@")
        memory_mode = memory_mode or "full"
        self.name = spec
        plan = ablated_plan(tier, memory_mode, device, drop) if drop else None
        self.engine = KontextEngine(resolve_weights(str(checkpoint)), EngineOptions(
            device=device, tier=tier, memory_mode=memory_mode, plan=plan, warmup_steps=2))
        self.engine.load()
        self.transformer = self.engine.pipe.transformer
        self.levers = ", ".join(self.engine.plan.levers()) or "none"
        self.fp8 = self.engine.plan.fp8_linears

    def warmup(self) -> None:
        """The engine's own warm-up (its compile shapes); the per-size edit covers the rest."""
        if self.engine.plan.compile is not None:
            self.engine.warmup()

    def run(self, image, width: int, height: int, steps: int) -> None:
        from pipelines.contract import EditRequest, RunControl

        self.engine.run(EditRequest(PROMPT, image, width, height, steps, GUIDANCE, SEED),
                        RunControl())

    def close(self) -> None:
        self.engine.close()


def make_runner(spec: str, checkpoint: Path, device: str):
    """`stock`, or `tier[@memory_mode][~lever…]` (e.g. `exact~compile` for the ablation)."""
    if spec == "stock":
        return StockRunner(checkpoint, device)
    return EngineRunner(checkpoint, device, spec)


def measure(runner, device: str, width: int, height: int, steps: int, repeats: int) -> Row:
    """Warm-up edit, then `repeats` timed edits: medians and peak memory."""
    import torch

    image = reference_image()
    runner.run(image, width, height, 2)
    cuda = device == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    e2e, per_step = [], []
    for _ in range(repeats):
        clock = StepClock(cuda)
        handles = [runner.transformer.register_forward_pre_hook(clock.mark),
                   runner.transformer.register_forward_hook(clock.mark)]
        synchronize(device)
        started = time.perf_counter()
        runner.run(image, width, height, steps)
        synchronize(device)
        e2e.append(time.perf_counter() - started)
        for handle in handles:
            handle.remove()
        # marks alternate pre/post per forward: first pre to last post covers every step
        spans = clock.step_seconds()
        per_step.append(sum(spans) / steps)
    row = Row(runner.name, f"{width}x{height}", steps, statistics.median(e2e),
              statistics.median(per_step) * 1000, levers=runner.levers)
    if cuda:
        row.peak_alloc_gib = torch.cuda.max_memory_allocated() / 2**30
        row.peak_reserved_gib = torch.cuda.max_memory_reserved() / 2**30
        tokens = ShapeCase(width, height, 1024, 1024).image_tokens
        row.floor_fraction = floor_seconds(tokens, runner.fp8) * 1000 / row.step_ms
    return row


def run_engine(spec: str, checkpoint: Path, args) -> list[Row]:
    """Load one engine, measure it at every size, unload it. Refusals become rows."""
    from pipelines.errors import InvalidInput

    try:
        runner = make_runner(spec, checkpoint, args.device)
    except InvalidInput as exc:
        return [Row(spec, size, args.steps, refused=str(exc)) for size in args.sizes]
    try:
        runner.warmup()
        return [measure(runner, args.device, *map(int, size.split("x")), args.steps,
                        args.repeats) for size in args.sizes]
    finally:
        import torch

        runner.close()
        del runner
        gc.collect()
        # Each engine compiles its own graphs; drop them so they count against no limit.
        torch._dynamo.reset()
        if args.device == "cuda":
            torch.cuda.empty_cache()


def add_speedups(rows: list[Row]) -> None:
    """Speed-up over stock at the same size, from end-to-end medians."""
    stock = {r.size: r.e2e_s for r in rows if r.engine == "stock" and r.e2e_s}
    for row in rows:
        if row.e2e_s and row.size in stock:
            row.speedup = stock[row.size] / row.e2e_s


def table(rows: list[Row]) -> list[str]:
    """Markdown table of the rows."""
    def fmt(value, pattern):
        return "—" if value is None else pattern.format(value)

    lines = ["| engine | size | steps | end-to-end s | per step ms | × stock | floor fraction "
             "| peak alloc GiB | peak reserved GiB | levers |", "|" + "---|" * 10]
    for r in rows:
        if r.refused:
            lines.append(f"| {r.engine} | {r.size} | {r.steps} | refused: {r.refused} |"
                         " | | | | | |")
            continue
        lines.append(
            f"| {r.engine} | {r.size} | {r.steps} | {fmt(r.e2e_s, '{:.3f}')} | "
            f"{fmt(r.step_ms, '{:.1f}')} | {fmt(r.speedup, '{:.2f}×')} | "
            f"{fmt(r.floor_fraction, '{:.0%}')} | {fmt(r.peak_alloc_gib, '{:.1f}')} | "
            f"{fmt(r.peak_reserved_gib, '{:.1f}')} | {r.levers} |")
    return lines


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=Path("bench-checkpoint"),
                        help="where the random checkpoint is (built there once if missing)")
    parser.add_argument("--tiny", action="store_true", help="tiny checkpoint (smoke run)")
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--engines", default=DEFAULT_ENGINES,
                        help="comma-separated: stock, TIER, TIER@MEMORY_MODE; append ~LEVER "
                        f"to drop a lever ({', '.join(ABLATIONS)})")
    parser.add_argument("--sizes", default="512x512,1024x1024,1024x768")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    parser.add_argument("--write-results", action="store_true",
                        help="replace this benchmark's section of benchmarks/RESULTS.md")
    args = parser.parse_args(argv)
    args.sizes = args.sizes.split(",")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run every engine at every size and print (and optionally record) the table."""
    args = parse_args(argv)
    checkpoint = ensure_checkpoint(args.checkpoint, args.tiny, args.device)
    rows: list[Row] = []
    for spec in args.engines.split(","):
        print(f"== {spec}", flush=True)
        rows += run_engine(spec, checkpoint, args)
    add_speedups(rows)
    lines = table(rows)
    env = environment(args.device)
    print("\n".join([env, *lines]))
    if args.json:
        args.json.write_text(json.dumps({"environment": env, "argv": sys.argv,
                                         "rows": [asdict(r) for r in rows]}, indent=1))
    if args.write_results:
        from benchmarks_results import write_section

        kind = "tiny-checkpoint CPU smoke run (NOT a performance figure)" if args.tiny \
            else "full-size random-weight model"
        note = [TINY_NOTE, ""] if args.tiny else []
        # One section per engine set, so the ablation run does not replace the main table.
        engines = "" if args.engines == DEFAULT_ENGINES else f" [{args.engines}]"
        write_section(f"Engine tiers vs stock diffusers{engines} — {kind}", [
            f"Command: `python benchmarks/engine_benchmark.py {' '.join(sys.argv[1:])}`", "",
            f"Environment: {env}", "", *note, *lines])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
