"""Server-level timings of a tier: cold start and the engine's idle gap in a full queue.

Cold start: `kontext serve` is started as a subprocess and timed from process start to
`/readyz` 200 (weights on local disk), twice: first with an empty torch.compile cache
directory (cold), then with the same directory again (warm).

Inter-job gap: with the warm server up, 20 jobs are posted at once. The engine runs them one
after another, so wall time = Σ engine time (each job's `metrics.elapsed`) + the time the
engine sat idle between jobs; the gap per job is (wall − Σ elapsed) / jobs.

    python benchmarks/serve_benchmark.py --tier exact --write-results
    python benchmarks/serve_benchmark.py --tiny --device cpu --size 512x512 --steps 2
"""

from __future__ import annotations

import argparse
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx2

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_common import ensure_checkpoint, environment
from engine_benchmark import reference_image

DEV = "inference.flux-fast.dev-kontext.img2img.v1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(args, checkpoint: Path, cache_dir: Path, log) -> tuple[subprocess.Popen,
                                                                        int, float]:
    """Start `kontext serve`; return (process, port, seconds from spawn to /readyz 200)."""
    port = free_port()
    command = [sys.executable, "-m", "server.cli.main", "serve", "--weights", str(checkpoint),
               "--tier", args.tier, "--memory-mode", args.memory_mode, "--device",
               args.device, "--port", str(port), "--queue-size", str(args.jobs + 4)]
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(cache_dir)}
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env,
                               cwd=Path(__file__).resolve().parent.parent)
    while time.perf_counter() - started < args.start_timeout:
        if process.poll() is not None:
            raise SystemExit(f"kontext serve exited with {process.returncode}; see {log.name}")
        try:
            if httpx2.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return process, port, time.perf_counter() - started
        except httpx2.HTTPError:
            pass
        time.sleep(0.25)
    process.terminate()
    raise SystemExit(f"not ready after {args.start_timeout}s; see {log.name}")


def post_job(port: int, png: bytes, width: int, height: int, steps: int, seed: int) -> dict:
    """One dev-kontext job; returns its job JSON."""
    config = {"prompt": "replace the sky with a stormy one", "width": width,
              "height": height, "steps": steps, "seed": seed}
    files = [("input", ("in.png", png, "image/png")),
             ("job", ("job.json", json.dumps({"type": DEV, "config": config}),
                      "application/json"))]
    reply = httpx2.post(f"http://127.0.0.1:{port}/v2/job", files=files,
                       headers={"Accept": "application/json"}, timeout=3600)
    reply.raise_for_status()
    return reply.json()


def queue_gap(port: int, args) -> tuple[float, float, float]:
    """(wall s, Σ engine elapsed s, idle gap per job s) for `args.jobs` jobs posted at once."""
    buffer = io.BytesIO()
    reference_image().save(buffer, format="PNG")
    png = buffer.getvalue()
    width, height = (int(v) for v in args.size.split("x"))
    post_job(port, png, width, height, args.steps, 0)  # first-request effects out of the way
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        jobs = list(pool.map(lambda seed: post_job(port, png, width, height, args.steps,
                                                   seed), range(1, args.jobs + 1)))
    wall = time.perf_counter() - started
    engine = sum(job["metrics"]["elapsed"] for job in jobs)
    return wall, engine, (wall - engine) / args.jobs


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=Path("bench-checkpoint"))
    parser.add_argument("--tiny", action="store_true", help="tiny checkpoint (smoke run)")
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--tier", default="exact")
    parser.add_argument("--memory-mode", default="full")
    parser.add_argument("--size", default="1024x1024")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--start-timeout", type=float, default=1800)
    parser.add_argument("--write-results", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Cold start (cold and warm compile cache), then the queue gap on the warm server."""
    args = parse_args(argv)
    checkpoint = ensure_checkpoint(args.checkpoint, args.tiny, args.device)
    cache_dir = Path(tempfile.mkdtemp(prefix="kontext-inductor-"))
    with tempfile.NamedTemporaryFile("w", suffix=".log", delete=False) as log:
        cold_process, _, cold = start_server(args, checkpoint, cache_dir, log)
        cold_process.terminate()
        cold_process.wait(60)
        process, port, warm = start_server(args, checkpoint, cache_dir, log)
        try:
            wall, engine, gap = queue_gap(port, args)
        finally:
            process.terminate()
            process.wait(60)
    lines = [
        f"Command: `python benchmarks/serve_benchmark.py {' '.join(sys.argv[1:])}`", "",
        f"Environment: {environment(args.device)}", "",
        f"Tier {args.tier}, memory mode {args.memory_mode}; jobs {args.size}, {args.steps} "
        "steps, 1024² PNG reference.", "",
        "| measure | seconds |", "|---|---|",
        f"| cold start, empty compile cache (spawn → /readyz 200) | {cold:.1f} |",
        f"| cold start, warm compile cache | {warm:.1f} |",
        f"| {args.jobs} queued jobs: wall time | {wall:.2f} |",
        f"| {args.jobs} queued jobs: Σ engine time (metrics.elapsed) | {engine:.2f} |",
        f"| engine idle gap per job, (wall − Σ engine) / jobs | {gap:.3f} |",
    ]
    if args.device == "cpu":
        lines.insert(6, "On CPU nothing is compiled, so the two cold starts differ only by noise.")
        lines.insert(7, "")
    print("\n".join(lines))
    if args.write_results:
        from benchmarks_results import write_section

        kind = "tiny-checkpoint CPU smoke run" if args.tiny else "full-size random-weight model"
        write_section(f"Cold start and queue gap ({args.tier}) — {kind}", lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
