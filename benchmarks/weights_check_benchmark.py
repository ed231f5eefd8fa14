"""`kontext weights check` on FLUX.1-Kontext-dev's full-size layout, on the CPU.

The checkpoint is the real layout with headers only (16.9 billion parameters whose data is
a sparse hole: tests/helpers/header_only.py), so the figures are those of the check itself:
what importing diffusers and transformers costs, what the check costs after that, and the
process's peak memory before and after it (the check reads no weight, so the peak should
barely move). Prints a table; --write-results writes the section "Weights check at full
size (CPU)" of benchmarks/RESULTS.md.

    python benchmarks/weights_check_benchmark.py --runs 5 --write-results
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from benchmarks_results import write_section  # noqa: E402


def peak_mib() -> float:
    """This process's peak resident memory so far."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="checks in a row (at least 2)")
    parser.add_argument("--write-results", action="store_true")
    args = parser.parse_args()
    args.runs = max(2, args.runs)

    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    import diffusers  # noqa: F401  (what the check imports, timed on their own)
    import transformers  # noqa: F401

    from pipelines.weights.check import check_weights
    imported = time.perf_counter() - started
    from helpers.header_only import write_full_size_checkpoint

    from pipelines.weights.tiny import write_tiny_checkpoint

    with tempfile.TemporaryDirectory() as scratch:
        tiny = write_tiny_checkpoint(Path(scratch) / "tiny")
        folder = write_full_size_checkpoint(Path(scratch) / "FLUX.1-Kontext-dev", tiny)
        before = peak_mib()
        seconds, report = [], None
        for _ in range(args.runs):
            tick = time.perf_counter()
            report = check_weights(str(folder))
            seconds.append(time.perf_counter() - tick)
        after = peak_mib()
    assert report is not None and report.loadable, report.render() if report else "no run"
    parameters = sum(component.parameters for component in report.components)
    lines = [
        "Command: `python benchmarks/weights_check_benchmark.py "
        f"--runs {args.runs}{' --write-results' if args.write_results else ''}`",
        "",
        f"Hardware: {platform.processor() or platform.machine()}, {os.cpu_count()} cores "
        f"(load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after: a shared "
        "machine, so times are upper bounds); versions: "
        f"torch {version('torch')}, diffusers {version('diffusers')}, "
        f"transformers {version('transformers')}, Python {platform.python_version()}.",
        "",
        f"Checkpoint: the full-size layout, {parameters:,} parameters in headers only "
        "(`tests/helpers/header_only.py`); verdict OK.",
        "",
        "| what | figure |",
        "|---|---|",
        f"| importing diffusers, transformers and the check (once per process) | "
        f"{imported:.1f} s |",
        f"| the first check (its own lazy imports included) | {seconds[0]:.1f} s |",
        f"| each later check, median of {len(seconds) - 1} (min) | "
        f"{statistics.median(seconds[1:]):.1f} s ({min(seconds[1:]):.1f} s) |",
        f"| peak memory after the imports, after the checks | {before:.0f} MiB, {after:.0f} MiB "
        f"(+{after - before:.0f} MiB for {parameters / 1e9:.1f} B parameters described) |",
    ]
    print("\n".join(lines))
    if args.write_results:
        write_section("Weights check at full size (CPU)", lines)


if __name__ == "__main__":
    main()
