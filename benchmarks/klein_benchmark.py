"""One FLUX.2 [klein] edit per tier: an img2img job with one reference, end to end through
the engine (text encoder, 4 denoising steps, VAE decode), as a served job runs it.

    # CPU, tiny klein checkpoint (random weights, real geometry): NOT a performance figure
    python benchmarks/klein_benchmark.py --tiny --device cpu --write-results
    # the goal, on one H100 with the real weights: 1024², one reference, 4 steps, exact
    python benchmarks/klein_benchmark.py --weights /models/FLUX.2-klein-4B --device cuda \
        --size 1024 --write-results

Each tier is planned as the server plans it on the device (a tier the device cannot run is
reported with the server's own refusal); each engine is warmed up at the measured size
first, then the edit runs `--repeats` times and the table gives the median and the fastest.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_common import environment, synchronize
from benchmarks_results import write_section
from PIL import Image

from pipelines.contract import EditRequest, RunControl
from pipelines.errors import InvalidInput

TIERS = ("exact", "fp8", "turbo")
PROMPT, SEED, STEPS = "put the cat from the reference on the sofa", 42, 4


def engine_for(weights: str, tier: str, device: str, size: int):
    """A loaded, warmed-up KleinEngine, or the refusal's text."""
    from pipelines.engine.klein import KleinEngine
    from pipelines.engine.options import EngineOptions
    from pipelines.weights.source import resolve_weights

    try:
        engine = KleinEngine(resolve_weights(weights), EngineOptions(
            device=device, tier=tier, warmup_steps=STEPS, warmup_size=(size, size)))
    except InvalidInput as exc:
        return str(exc)
    engine.load()
    engine.warmup()
    return engine


def time_edit(engine, size: int, repeats: int) -> tuple[list[float], float]:
    """Wall seconds of each repeat, and the last job's steady per-step seconds."""
    reference = Image.new("RGB", (size, size), (120, 90, 60))
    request = EditRequest(PROMPT, reference, size, size, STEPS, 1.0, SEED, model="klein-4b")
    times, step = [], 0.0
    for _ in range(repeats):
        synchronize(engine.device)
        started = time.perf_counter()
        result = engine.run(request, RunControl())
        synchronize(engine.device)
        times.append(time.perf_counter() - started)
        step = result.step_seconds
    return times, step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", help="a klein folder or cached repo id")
    parser.add_argument("--tiny", action="store_true", help="the tiny random checkpoint")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tiers", default=",".join(TIERS))
    parser.add_argument("--write-results", action="store_true")
    args = parser.parse_args()
    weights = args.weights
    if args.tiny or not weights:
        from pipelines.weights.tiny_klein import write_tiny_klein_checkpoint

        weights = str(write_tiny_klein_checkpoint(Path(tempfile.mkdtemp()) / "klein"))
    rows = ["| tier | size | steps | end-to-end s (median) | fastest s | per step ms | levers |",
            "|---|---|---|---|---|---|---|"]
    for tier in args.tiers.split(","):
        engine = engine_for(weights, tier, args.device, args.size)
        if isinstance(engine, str):
            rows.append(f"| {tier} | {args.size}² + 1 ref | {STEPS} | refused: {engine} "
                        "| | | |")
            continue
        times, step = time_edit(engine, args.size, args.repeats)
        rows.append(f"| {tier} | {args.size}² + 1 ref | {STEPS} | "
                    f"{statistics.median(times):.3f} | {min(times):.3f} | {step * 1000:.1f} "
                    f"| {engine.info.extra['levers']} |")
        engine.close()
    command = "python benchmarks/klein_benchmark.py " + " ".join(sys.argv[1:])
    tiny = args.tiny or not args.weights
    title = ("FLUX.2 [klein] edit per tier — tiny-checkpoint CPU smoke run (NOT a performance "
             "figure)") if tiny else f"FLUX.2 [klein] edit per tier — {args.device}"
    lines = [f"Command: `{command}`", "", f"Environment: {environment(args.device)}", ""]
    if tiny:
        lines += ["Tiny random klein checkpoint (real classes and geometry, 1 + 1 blocks) on "
                  "a shared CPU: it shows that each tier runs or is refused, not how fast "
                  "the real model is.", ""]
    print("\n".join(lines + rows))
    if args.write_results:
        write_section(title, lines + rows)


if __name__ == "__main__":
    main()
