"""What the content filter adds to a job's latency through the real job path, with the input
check overlapping the job (docs/safety.md, "The content filter").

A real server on loopback, the fake engine standing in for a GPU (each denoising step
sleeps: the CPU stays free, as it does while a GPU generates), the full-size classifier
architecture of Falconsai/nsfw_image_detection with RANDOM weights on the CPU (built by
safety_benchmark.py). Jobs one at a time, 1024² input and output, `--safety off` then
`--safety block`; the added latency is the difference of the medians, compared with the
filter's own time per checkpoint (`metrics.safety_seconds`). The input check is hidden
when the added latency is about the prompt + output checks, not prompt + input + output.

    python benchmarks/safety_job_latency.py --runs 10 --write-results
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from benchmarks_results import write_section  # noqa: E402
from helpers.fake_engine import FakeEngine  # noqa: E402
from helpers.http import job_of, post_job  # noqa: E402
from helpers.live_server import start_server  # noqa: E402
from safety_benchmark import build_classifier, busy_note, environment, photo_like  # noqa: E402

from server.api.app import create_app  # noqa: E402
from server.settings import Settings  # noqa: E402

CHECKPOINTS = ("prompt", "input", "output")


def png(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def run_jobs(settings: Settings, step_seconds: float, steps: int, runs: int
             ) -> tuple[list[float], dict[str, list[float]]]:
    """Wall seconds of each job (after one warm-up) and the filter's seconds by checkpoint."""
    live = start_server(create_app(settings, FakeEngine(step_seconds=step_seconds)))
    image = png(photo_like(1024, seed=3))
    config = {"prompt": "turn it into a watercolour", "width": 1024, "height": 1024,
              "steps": steps, "seed": 1}
    walls, filtered = [], {name: [] for name in CHECKPOINTS}
    try:
        for index in range(runs + 1):
            answer = post_job(live.url, config, image, "multipart/form-data; image/jpeg",
                              timeout=300)
            assert answer.status_code == 200, answer.text
            if index == 0:
                continue  # warm-up: first classifier call, first encode
            walls.append(answer.elapsed.total_seconds())
            for name, seconds in job_of(answer)["metrics"].get("safety_seconds", {}).items():
                filtered[name].append(seconds)
    finally:
        live.stop()
    return walls, filtered


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--step-seconds", type=float, default=0.1,
                        help="the fake engine's time per step (a GPU's, say)")
    parser.add_argument("--checkpoint", type=Path,
                        default=Path(tempfile.gettempdir()) / "kontext-safety-bench")
    parser.add_argument("--write-results", action="store_true")
    args = parser.parse_args()

    load = os.getloadavg()[0]
    model = str(build_classifier(args.checkpoint))
    base = {"warmup": False, "results_dir": Path(tempfile.mkdtemp())}
    off, _ = run_jobs(Settings(**base), args.step_seconds, args.steps, args.runs)
    block, filtered = run_jobs(Settings(**base, safety="block", safety_model=model),
                               args.step_seconds, args.steps, args.runs)
    lines = report(args, off, block, filtered, max(load, os.getloadavg()[0]))
    print("\n".join(lines))
    if args.write_results:
        write_section("Content filter on the job path (CPU classifier)", lines)


def report(args: argparse.Namespace, off: list[float], block: list[float],
           filtered: dict[str, list[float]], load: float) -> list[str]:
    """The RESULTS.md section."""
    ms = {name: statistics.median(values) * 1000 for name, values in filtered.items()}
    added = (statistics.median(block) - statistics.median(off)) * 1000
    command = "python benchmarks/safety_job_latency.py " + " ".join(sys.argv[1:])
    generation = args.steps * args.step_seconds
    return [
        "One job at a time through the real server (HTTP, job service, the filter's thread), "
        f"the fake engine sleeping {args.step_seconds:g} s per step for {args.steps} steps "
        f"({generation:g} s of 'GPU' time during which the CPU is free), 1024² input and "
        "output, classifier: the Falconsai/nsfw_image_detection architecture with RANDOM "
        "weights on the CPU.", "", f"Command: `{command.strip()}`", "",
        f"Hardware: {environment('cpu')}.", "", busy_note(load), "",
        "| safety | job p50 s | job max s | filter time p50 ms (prompt / input / output) |",
        "|---|---|---|---|",
        f"| off | {statistics.median(off):.2f} | {max(off):.2f} | — |",
        f"| block | {statistics.median(block):.2f} | {max(block):.2f} | "
        f"{ms['prompt']:.1f} / {ms['input']:.0f} / {ms['output']:.0f} |", "",
        f"Added per job (p50 block − p50 off): **{added:.0f} ms**, against "
        f"{sum(ms.values()):.0f} ms of filter time: {sum(ms.values()) - added:.0f} ms of it "
        f"hidden behind the {generation * 1000:.0f} ms of generation (the input check, "
        f"{ms['input']:.0f} ms, overlaps it; the prompt and output checks, "
        f"{ms['prompt'] + ms['output']:.0f} ms, add to the job).",
    ]


if __name__ == "__main__":
    main()
