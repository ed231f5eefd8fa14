"""Context parallelism on CPU: a group of 2 ranks (gloo, Ulysses) beside one process, per
denoising step, on the tiny checkpoint (or `--depth real`: the real 19 + 38 blocks at tiny
width, so that a step has the real count of collectives).

Every engine is the server's own transport: one process (server/engines/child.py), or a
group of two processes (server/engines/group.py), each built by `kontext serve`'s
build_engine / build_rank_engine. Each runs one untimed edit, then `--runs` timed edits;
the figure is the engine's steady step time (the first step of each edit excluded), median
over the runs. The group's overhead per step is its step time minus half the 1-thread
process's: what the split costs beyond dividing the work (communication, and the parts every
rank repeats). On a 2-core machine this is a rehearsal of the mechanism, not a speed-up
figure: GPU latency on 1, 2 and 4 devices is owed (RESULTS.md).

    python benchmarks/context_parallel_benchmark.py --write-results
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import statistics
import sys
import tempfile
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks_results import write_section  # noqa: E402
from PIL import Image  # noqa: E402

from pipelines.contract import EditRequest, RunControl  # noqa: E402
from server.engine_build import (  # noqa: E402
    build_engine,
    build_rank_engine,
    planned_info,
    sharing_cpu,
)
from server.engines.child import ProcessEngine  # noqa: E402
from server.engines.group import GroupEngine  # noqa: E402
from server.settings import Settings  # noqa: E402

TITLE = "Context parallelism: a CPU group's overhead per step — tiny checkpoint, {} depth"


READING = [
    "",
    "Reading it: the two ranks and the one-process engines share the same 2 cores with "
    "whatever else runs on this machine (the 2-thread process being slower than the "
    "1-thread one says how busy it was), so only the order of magnitude is meaningful. "
    "The tiny model has 2 heads of 16 dimensions: each all-to-all and gather moves little "
    "data but costs a gloo round trip through loopback, and the text encoders and VAE run "
    "on both ranks, so the split's overhead dominates its step; on GPUs each rank's share "
    "of a 24-head, 3072-wide forward is large next to an NVLink all-to-all, which is why "
    "the GPU figures (owed: \"Context parallelism on GPUs\") are the ones that decide.",
]


def engines(settings: Settings) -> list[tuple[str, object, int]]:
    """(name, engine, threads per rank) of each configuration."""
    one = functools.partial(build_engine, settings)
    rank = functools.partial(build_rank_engine, settings)
    info = planned_info(settings, "cpu")
    return [
        ("one process, 1 thread", ProcessEngine(functools.partial(sharing_cpu, one, 1),
                                                "cpu", info), 1),
        ("one process, 2 threads", ProcessEngine(functools.partial(sharing_cpu, one, 2),
                                                 "cpu", info), 2),
        ("group of 2 (Ulysses, gloo), 1 thread per rank",
         GroupEngine(functools.partial(sharing_cpu, rank, 1), ["cpu", "cpu"], "cpu:0,cpu:1",
                     info), 1),
    ]


def measure(engine, request: EditRequest, runs: int) -> float:
    """Median steady step seconds over `runs` edits, after one untimed edit."""
    engine.load()
    try:
        engine.run(request, RunControl())
        return statistics.median(engine.run(request, RunControl()).step_seconds
                                 for _ in range(runs))
    finally:
        engine.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=512, help="output and canvas side")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--depth", choices=["tiny", "real"], default="tiny")
    parser.add_argument("--write-results", action="store_true")
    args = parser.parse_args()
    from pipelines.weights.tiny import REAL_DEPTH, write_tiny_checkpoint

    folder = Path(tempfile.mkdtemp()) / "tiny"
    write_tiny_checkpoint(folder, REAL_DEPTH if args.depth == "real" else (1, 1))
    settings = Settings(demo=True, demo_dir=folder, devices=["cpu", "cpu"],
                        context_parallel=2, warmup=False)
    canvas = Image.new("RGB", (args.size, args.size), (90, 120, 150))
    request = EditRequest(prompt="make it blue", image=canvas, width=args.size,
                          height=args.size, steps=args.steps, guidance_scale=2.5, seed=0)
    rows = [(name, measure(engine, request, args.runs)) for name, engine, _ in
            engines(settings)]
    one_thread = rows[0][1]
    group = rows[-1][1]
    lines = [
        f"Tiny checkpoint ({args.depth} depth: "
        f"{'19 + 38' if args.depth == 'real' else '1 + 1'} blocks, 2 heads), "
        f"{args.size}² output with a {args.size}² canvas (fed at ~1 MP: 4096 tokens), "
        f"{args.steps} steps, median of {args.runs} edits after one untimed; steady step "
        "time (first step excluded).", "",
        f"Command: `python benchmarks/context_parallel_benchmark.py --size {args.size} "
        f"--steps {args.steps} --runs {args.runs} --depth {args.depth} --write-results`", "",
        f"Hardware: {platform.machine()}, {os.cpu_count()} cores; Python "
        f"{platform.python_version()}, torch {version('torch')}, diffusers "
        f"{version('diffusers')}.", "",
        "| engine | step (s) | × one process, 1 thread |", "|---|---|---|",
        *[f"| {name} | {seconds:.4f} | {seconds / one_thread:.2f}× |" for name, seconds in rows],
        "",
        f"Ideal group step (half the 1-thread step): {one_thread / 2:.4f} s; the group's "
        f"overhead per step beyond it: **{group - one_thread / 2:.4f} s** "
        f"({(group - one_thread / 2) / group:.0%} of its step).",
    ]
    print("\n".join(lines))
    if args.write_results:
        write_section(TITLE.format(args.depth), lines + READING)


if __name__ == "__main__":
    main()
