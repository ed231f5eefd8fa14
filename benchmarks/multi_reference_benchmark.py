"""What several input images cost: per-step time of 1, 2 and 4 inputs at 1024², and how the
step time grows with reference tokens (the measured exponent).

Two budgets: the engine's default reference token budget (four inputs cost about what two
1024² inputs cost), and one large enough that every input keeps its full ~1 MP size, which
spreads the sequence lengths for the exponent fit. A step's time is one transformer forward
(the scheduler's step is negligible): each case runs one real edit through the engine, its
transformer call is captured, and the captured calls are replayed in turns for `--repeats`
rounds, so that a busy shared machine slows every case alike (CUDA events on GPU). The
table gives each case's fastest round (the least disturbed) and, on CPU, the process's CPU
time (all threads), which other load disturbs less than wall time.

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
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_common import ensure_checkpoint, environment, flops_per_step
from engine_benchmark import reference_image

from pipelines.engine.warmup import TEXT_TOKENS, tokens_for
from pipelines.references.plan import (
    DEFAULT_REFERENCE_TOKEN_BUDGET,
    LARGEST_CANVAS_TOKENS,
    MAX_INPUT_IMAGES,
    REFERENCE_METHODS,
)

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
    step_ms: list[float] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)

    @property
    def sequence(self) -> int:
        """Tokens of one transformer forward: text, output and inputs."""
        return TEXT_TOKENS + tokens_for(SIDE, SIDE) + self.reference_tokens


def inputs(count: int):
    """`count` different 1024² images (the canvas first)."""
    base = reference_image(SIDE)
    return [base.rotate(90 * i) for i in range(count)]


def load_engine(args, budget: int = FULL_SIZE_BUDGET):
    from pipelines.engine.kontext import KontextEngine
    from pipelines.engine.options import EngineOptions
    from pipelines.weights.source import resolve_weights

    checkpoint = ensure_checkpoint(args.checkpoint, args.tiny, args.device)
    engine = KontextEngine(resolve_weights(str(checkpoint)), EngineOptions(
        device=args.device, tier=args.tier, plan=args.plan, warmup_steps=2,
        reference_token_budget=budget))
    engine.load()
    return engine


def edit(engine, row: Row, steps: int, side: int = SIDE):
    from pipelines.contract import EditRequest, RunControl

    canvas, *references = inputs(row.inputs)
    request = EditRequest(PROMPT, canvas, side, side, steps, GUIDANCE, SEED,
                          references=tuple(references), reference_method=row.method)
    # The budget is read per job: one loaded engine serves both budgets.
    engine.reference_token_budget = row.budget
    return engine.run(request, RunControl())


def captured_call(engine, row: Row) -> dict:
    """One real 1-step edit of `row`'s case; returns the transformer's keyword arguments."""
    calls: list[dict] = []
    hook = engine.pipe.transformer.register_forward_pre_hook(
        lambda _m, _a, kwargs: calls.append(dict(kwargs)), with_kwargs=True)
    try:
        row.reference_tokens = edit(engine, row, 1).reference_tokens
    finally:
        hook.remove()
    return calls[0]


def time_step(engine, call: dict, device: str) -> tuple[float, float]:
    """(wall ms, process CPU ms) of one transformer forward: one denoising step's work."""
    import torch

    transformer = engine.pipe.transformer
    with torch.inference_mode():
        if device == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(
                enable_timing=True)
            start.record()
            transformer(**call)
            end.record()
            torch.cuda.synchronize()
            return start.elapsed_time(end), 0.0
        wall, cpu = time.perf_counter(), time.process_time()
        transformer(**call)
        return (time.perf_counter() - wall) * 1000, (time.process_time() - cpu) * 1000


def measure_all(engine, rows: list[Row], device: str, repeats: int) -> None:
    """Capture each case's forward from a real edit, then `repeats` rounds in which every
    case's forward runs once more (cases take turns, so machine load hits them alike)."""
    calls = [captured_call(engine, row) for row in rows]  # also each length's first call
    for round_ in range(repeats):
        for row, call in zip(rows, calls, strict=True):
            wall, cpu = time_step(engine, call, device)
            row.step_ms.append(wall)
            if device == "cpu":
                row.cpu_ms.append(cpu)
            print(f"round {round_ + 1}: {row.inputs} inputs, {row.method}, budget "
                  f"{row.budget}: {wall:.1f} ms/step", flush=True)


def cases(methods: list[str]) -> list[Row]:
    """1, 2 and 4 inputs under the default budget (each method); 2–4 at full size (one
    input costs the same under both budgets)."""
    rows = [Row(DEFAULT_REFERENCE_TOKEN_BUDGET, 1, "offset")]
    rows += [Row(DEFAULT_REFERENCE_TOKEN_BUDGET, n, m) for n in (2, 4) for m in methods]
    rows += [Row(FULL_SIZE_BUDGET, n, "offset") for n in range(2, MAX_INPUT_IMAGES + 1)]
    return rows


def exponent(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of log(y) against log(x): y ∝ x^slope."""
    xs, ys = [math.log(x) for x, _ in points], [math.log(y) for _, y in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / \
        sum((x - mx) ** 2 for x in xs)


def table(rows: list[Row]) -> list[str]:
    """The rows (fastest round; × the one-input case), then the measured exponents."""
    cpu = all(r.cpu_ms for r in rows)
    one = rows[0]
    lines = ["| budget (tokens) | inputs | method | reference tokens | sequence tokens | per step "
             "ms | × one input | CPU ms per step | × one input |", "|" + "---|" * 9]
    for r in rows:
        cpu_cells = f"{min(r.cpu_ms):.0f} | {min(r.cpu_ms) / min(one.cpu_ms):.2f}×" if cpu \
            else "— | —"
        lines.append(f"| {r.budget} | {r.inputs} | {r.method} | {r.reference_tokens} | "
                     f"{r.sequence} | {min(r.step_ms):.1f} | "
                     f"{min(r.step_ms) / min(one.step_ms):.2f}× | {cpu_cells} |")
    full = [one] + [r for r in rows if r.budget == FULL_SIZE_BUDGET]
    fitted = [f"{exponent([(r.sequence, min(r.step_ms)) for r in full]):.2f} (wall time)"]
    if cpu:
        fitted.append(f"{exponent([(r.sequence, min(r.cpu_ms)) for r in full]):.2f} (CPU time)")
    flops = exponent([(r.sequence, sum(flops_per_step(r.sequence - TEXT_TOKENS)))
                      for r in full])
    noise = ("Cases with equal token counts (index, offset and stitch at 2 or 4 inputs) do "
             "the same work: their spread is the machine's noise. ")
    return [*lines, "", noise + f"Measured exponent b in step time ∝ (sequence tokens)^b over "
            f"{full[0].sequence}–{full[-1].sequence} tokens (1–4 full-size inputs): "
            f"b = {', '.join(fitted)}. The full-size model's FLOP count "
            f"(performance.md) gives b = {flops:.2f} over the same range (computed, "
            "not measured)."]


def recompile_check(args) -> int:
    """Warm up, then run 1–4 inputs with every method under error_on_recompile."""
    import torch

    engine = load_engine(args, DEFAULT_REFERENCE_TOKEN_BUDGET)
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
    parser.add_argument("--tier", default="exact",
                        help="engine tier (GPU): exact or fp8; turbo's step cache would "
                        "answer replayed forwards from its cache")
    parser.add_argument("--methods", default=",".join(REFERENCE_METHODS))
    parser.add_argument("--repeats", type=int, default=5)
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
        from pipelines.levers.plan import CompileSpec, EnginePlan

        # The CPU plan has no levers; add the GPU tiers' regional dynamic compile.
        args.plan = EnginePlan(tier="exact", memory_mode="full", device="cpu",
                               dtype="float32", compile=CompileSpec(backend=args.backend))
    return args


def main(argv: list[str] | None = None) -> int:
    """Measure every case and print (and optionally record) the table."""
    args = parse_args(argv)
    load_start = os.getloadavg()[0]
    if args.recompile_check:
        return recompile_check(args)
    engine = load_engine(args)
    if engine.plan.compile is not None:
        engine.warmup()
    rows = cases(args.methods.split(","))
    measure_all(engine, rows, args.device, args.repeats)
    lines, env = table(rows), environment(args.device)
    print("\n".join([env, *lines]))
    if args.write_results:
        from benchmarks_results import write_section

        kind = "tiny checkpoint, CPU" if args.tiny else "full-size random-weight model"
        levers = ", ".join(engine.plan.levers()) or "none"
        write_section(f"Multi-reference cost at 1024² — {kind}", [
            f"Command: `python benchmarks/multi_reference_benchmark.py "
            f"{' '.join(sys.argv[1:])}`", "",
            f"Environment: {env}; fastest of {args.repeats} rounds; "
            f"levers: {levers}; load average (1 min) at start/end: {load_start:.1f}/"
            f"{os.getloadavg()[0]:.1f}", "", *lines])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
