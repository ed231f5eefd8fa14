"""What several input images cost: per-step time of 1, 2 and 4 inputs at 1024², and how the
step time grows with reference tokens (the measured exponent).

Two budgets: the engine's default reference token budget (four inputs cost about what two
1024² inputs cost), and one large enough that every input keeps its full ~1 MP size, which
spreads the sequence lengths for the exponent fit. Per-step time is first transformer
forward to last, divided by the steps (CUDA events on GPU), median of `--repeats` edits
after one untimed edit per case.

    # CPU, tiny checkpoint (random weights, real geometry: real token counts)
    python benchmarks/multi_reference_benchmark.py --tiny --device cpu --write-results
    # GPU, full-size random-weight model (builds ./bench-checkpoint once, ~34 GB)
    python benchmarks/multi_reference_benchmark.py --write-results
    # after warm-up, no count of inputs or method recompiles (inductor; also on CPU)
    python benchmarks/multi_reference_benchmark.py --tiny --device cpu --recompile-check
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_common import StepClock, ensure_checkpoint, environment, flops_per_step, synchronize
from engine_benchmark import reference_image

from pipelines.references import (
    DEFAULT_REFERENCE_TOKEN_BUDGET,
    LARGEST_CANVAS_TOKENS,
    MAX_INPUT_IMAGES,
    REFERENCE_METHODS,
)
from pipelines.shapes import TEXT_TOKENS, tokens_for

PROMPT, SEED, GUIDANCE, SIDE = "put the object from the second image on the table", 42, 2.5, 1024
#: Large enough that four 1024² inputs keep their full size (for the exponent fit).
FULL_SIZE_BUDGET = MAX_INPUT_IMAGES * LARGEST_CANVAS_TOKENS


@dataclass
class Row:
    """One case: a budget, a number of inputs and a method."""

    budget: int
    inputs: int
    method: str
    reference_tokens: int = 0
    step_ms: float = 0.0
    e2e_s: float = 0.0

    @property
    def sequence(self) -> int:
        """Tokens of one transformer forward: text, output and inputs."""
        return TEXT_TOKENS + tokens_for(SIDE, SIDE) + self.reference_tokens


def inputs(count: int):
    """`count` different 1024² images (the canvas first)."""
    base = reference_image(SIDE)
    return [base.rotate(90 * i) for i in range(count)]


def load_engine(args):
    from pipelines.engine import KontextEngine
    from pipelines.weights import resolve_weights

    checkpoint = ensure_checkpoint(args.checkpoint, args.tiny, args.device)
    engine = KontextEngine(resolve_weights(str(checkpoint)), device=args.device,
                           tier=args.tier, plan=args.plan, warmup_steps=2,
                           reference_token_budget=FULL_SIZE_BUDGET)
    engine.load()
    return engine


def edit(engine, row: Row, steps: int, side: int = SIDE):
    from pipelines.types import EditRequest, RunControl

    canvas, *references = inputs(row.inputs)
    request = EditRequest(PROMPT, canvas, side, side, steps, GUIDANCE, SEED,
                          references=tuple(references), reference_method=row.method)
    # The budget is read per job: one loaded engine serves both budgets.
    engine.reference_token_budget = row.budget
    return engine.run(request, RunControl())


def measure(engine, row: Row, device: str, steps: int, repeats: int) -> Row:
    """One untimed edit, then `repeats` timed ones: median per-step and end-to-end times."""
    row.reference_tokens = edit(engine, row, 1).reference_tokens
    per_step, e2e = [], []
    for _ in range(repeats):
        clock = StepClock(device == "cuda")
        transformer = engine.pipe.transformer
        handles = [transformer.register_forward_pre_hook(clock.mark),
                   transformer.register_forward_hook(clock.mark)]
        synchronize(device)
        started = time.perf_counter()
        edit(engine, row, steps)
        synchronize(device)
        e2e.append(time.perf_counter() - started)
        for handle in handles:
            handle.remove()
        per_step.append(sum(clock.step_seconds()) / steps)
    row.step_ms, row.e2e_s = statistics.median(per_step) * 1000, statistics.median(e2e)
    return row


def cases(methods: list[str]) -> list[Row]:
    """1, 2 and 4 inputs under the default budget (each method); 1–4 at full size."""
    rows = [Row(DEFAULT_REFERENCE_TOKEN_BUDGET, 1, "offset")]
    rows += [Row(DEFAULT_REFERENCE_TOKEN_BUDGET, n, m) for n in (2, 4) for m in methods]
    rows += [Row(FULL_SIZE_BUDGET, n, "offset") for n in range(1, MAX_INPUT_IMAGES + 1)]
    return rows


def exponent(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of log(y) against log(x): y ∝ x^slope."""
    xs, ys = [math.log(x) for x, _ in points], [math.log(y) for _, y in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / \
        sum((x - mx) ** 2 for x in xs)


def table(rows: list[Row]) -> list[str]:
    """The measured rows, then the exponents of the full-size rows."""
    lines = ["| budget (tokens) | inputs | method | reference tokens | sequence tokens "
             "| per step ms | × one input | end-to-end s |", "|" + "---|" * 8]
    one = {r.budget: r.step_ms for r in rows if r.inputs == 1}
    for r in rows:
        lines.append(f"| {r.budget} | {r.inputs} | {r.method} | {r.reference_tokens} | "
                     f"{r.sequence} | {r.step_ms:.1f} | {r.step_ms / one[r.budget]:.2f}× | "
                     f"{r.e2e_s:.2f} |")
    full = [r for r in rows if r.budget == FULL_SIZE_BUDGET]
    measured = exponent([(r.sequence, r.step_ms) for r in full])
    flop_model = exponent([(r.sequence, sum(flops_per_step(r.sequence - TEXT_TOKENS)))
                           for r in full])
    lines += ["", f"Measured: step time ∝ (sequence tokens)^{measured:.2f} over "
              f"{full[0].sequence}–{full[-1].sequence} tokens (1–4 full-size inputs); "
              f"the full-size model's FLOP count (performance.md) would give "
              f"^{flop_model:.2f} over the same range (computed, not measured)."]
    return lines


def recompile_check(args) -> int:
    """Warm up, then run 1–4 inputs with every method under error_on_recompile."""
    import torch

    engine = load_engine(args)
    engine.warmup()
    with torch._dynamo.config.patch(error_on_recompile=True):
        for count in range(1, MAX_INPUT_IMAGES + 1):
            for method in REFERENCE_METHODS:
                side = 512 if count % 2 else SIDE
                row = Row(DEFAULT_REFERENCE_TOKEN_BUDGET, count, method)
                result = edit(engine, row, 1, side)
                print(f"no recompile: {count} inputs, {method}, output {side}², "
                      f"{result.reference_tokens} reference tokens", flush=True)
    print(f"OK: {engine.plan.levers()}; {environment(args.device)}")
    return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=Path("bench-checkpoint"),
                        help="where the random checkpoint is (built there once if missing)")
    parser.add_argument("--tiny", action="store_true", help="the tiny random checkpoint")
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--tier", default="exact", help="engine tier (GPU)")
    parser.add_argument("--methods", default=",".join(REFERENCE_METHODS))
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--recompile-check", action="store_true",
                        help="prove no recompile after warm-up instead of timing")
    parser.add_argument("--backend", default="inductor",
                        help="compile backend of --recompile-check on CPU (eager, inductor)")
    parser.add_argument("--write-results", action="store_true",
                        help="replace this benchmark's section of benchmarks/RESULTS.md")
    args = parser.parse_args(argv)
    if args.tiny and args.checkpoint == Path("bench-checkpoint"):
        args.checkpoint = Path("/tmp/kontext-tiny-bench")
    args.plan = None
    if args.recompile_check and args.device == "cpu":
        from pipelines.engine_plan import CompileSpec, EnginePlan

        # The CPU plan has no levers; add the GPU tiers' regional dynamic compile.
        args.plan = EnginePlan(tier="exact", memory_mode="full", device="cpu",
                               dtype="float32", compile=CompileSpec(backend=args.backend))
    return args


def main(argv: list[str] | None = None) -> int:
    """Measure every case and print (and optionally record) the table."""
    args = parse_args(argv)
    if args.recompile_check:
        return recompile_check(args)
    engine = load_engine(args)
    if engine.plan.compile is not None:
        engine.warmup()
    rows = []
    for row in cases(args.methods.split(",")):
        rows.append(measure(engine, row, args.device, args.steps, args.repeats))
        print(f"{row.inputs} inputs, {row.method}, budget {row.budget}: "
              f"{row.step_ms:.1f} ms/step", flush=True)
    lines, env = table(rows), environment(args.device)
    print("\n".join([env, *lines]))
    if args.write_results:
        from benchmarks_results import write_section

        kind = "tiny checkpoint, CPU" if args.tiny else "full-size random-weight model"
        write_section(f"Multi-reference cost at 1024² — {kind}", [
            f"Command: `python benchmarks/multi_reference_benchmark.py "
            f"{' '.join(sys.argv[1:])}`", "", f"Environment: {env}; {args.steps} steps, "
            f"median of {args.repeats}; levers: {', '.join(engine.plan.levers()) or 'none'}",
            "", *lines])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
