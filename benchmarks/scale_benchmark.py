"""Scale-out throughput: 1 vs 2 CPU engines (`--devices cpu` vs `cpu,cpu`, in processes and
in threads) and Ray Serve with 1 vs 2 engine replicas, in the same run; and the dispatch
latency Ray adds per request over the in-process server.

Every server is the real thing on loopback: `kontext serve --demo --devices …` as a
process of its own (so the load generator here shares no interpreter with it), and the Ray
Serve application on a local Ray instance. Each configuration gets the same jobs (tiny
checkpoint, `--size`², `--steps` steps, one 640×480 PNG input), `--concurrency` per engine
in flight, after one warm-up job per engine. Latency is per job, queueing included.

Ray's added latency: jobs one at a time on one engine, each job's round trip minus the
engine time the server reported for it (`metrics.elapsed`), Ray Serve (1 replica) minus
the in-process server (`--devices cpu --device-workers thread`, the engine in the server's
process), p50/p95 of each and the difference of the p50s.

    python benchmarks/scale_benchmark.py --jobs 16 --write-results
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import httpx2

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from benchmarks_results import write_section  # noqa: E402
from helpers.images import image_bytes  # noqa: E402
from helpers.live_server import wait_ready  # noqa: E402
from http_overhead import percentile  # noqa: E402

DEV = "inference.flux-fast.dev-kontext.img2img.v1"
PNG = image_bytes(640, 480)


@dataclass
class Run:
    """One configuration's jobs: wall time, per-job latency and server overhead."""

    name: str
    family: str
    engines: int
    wall: float
    latencies: list[float]
    overheads: list[float]

    @property
    def jobs_per_second(self) -> float:
        return len(self.latencies) / self.wall


def post(url: str, config: dict, seed: int) -> tuple[float, float]:
    """(round trip, round trip − engine time) of one job, in seconds."""
    job = json.dumps({"type": DEV, "config": {**config, "seed": seed}}).encode()
    files = [("input", ("in.png", PNG, "image/png")),
             ("job", ("job.json", job, "application/json"))]
    started = time.perf_counter()
    reply = httpx2.post(f"{url}/v2/job", files=files, headers={"Accept": "application/json"},
                       timeout=600)
    took = time.perf_counter() - started
    if reply.status_code != 200:
        raise RuntimeError(f"{reply.status_code}: {reply.text[:300]}")
    return took, took - reply.json()["metrics"]["elapsed"]


def load(url: str, name: str, family: str, engines: int, args) -> Run:
    """Warm each engine, then `args.jobs` jobs with `concurrency × engines` in flight."""
    config = {"prompt": "paint the fence teal", "width": args.size, "height": args.size,
              "steps": args.steps}
    with ThreadPoolExecutor(engines) as pool:
        list(pool.map(lambda seed: post(url, config, seed), range(engines)))
    started = time.perf_counter()
    with ThreadPoolExecutor(args.concurrency * engines) as pool:
        results = list(pool.map(lambda seed: post(url, config, seed),
                                range(100, 100 + args.jobs)))
    wall = time.perf_counter() - started
    run = Run(name, family, engines, wall, [r[0] for r in results], [r[1] for r in results])
    print(f"{name}: {run.jobs_per_second:.3f} jobs/s", flush=True)
    return run


def sequential(url: str, name: str, args) -> Run:
    """`args.latency_jobs` jobs one at a time (after one warm-up): dispatch overhead."""
    config = {"prompt": "paint the fence teal", "width": args.size, "height": args.size,
              "steps": args.steps}
    post(url, config, 0)
    started = time.perf_counter()
    results = [post(url, config, seed) for seed in range(1, 1 + args.latency_jobs)]
    return Run(name, name, 1, time.perf_counter() - started, [r[0] for r in results],
               [r[1] for r in results])


def local_server(devices: str, workers: str, demo_dir: Path, port: int) -> subprocess.Popen:
    """`kontext serve --demo --devices DEVICES --device-workers WORKERS` on `port`."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "server.cli.main", "serve", "--demo", "--demo-dir",
         str(demo_dir), "--devices", devices, "--device-workers", workers, "--port", str(port),
         "--no-warmup", "--queue-size", "64", "--log-level", "warning"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_local(devices: str, workers: str, demo_dir: Path, args, latency: bool = False
              ) -> list[Run]:
    port = free_port()
    server = local_server(devices, workers, demo_dir, port)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, timeout=600)
        engines = len(devices.split(","))
        family = {"process": "processes", "thread": "threads"}[workers]
        runs = [load(url, f"`--devices {devices}` ({family})", family, engines, args)]
        if latency:
            runs.append(sequential(url, "in-process server, 1 engine", args))
        return runs
    finally:
        server.terminate()
        server.wait(60)


def run_ray(replicas: int, demo_dir: Path, args, latency: bool = False) -> list[Run]:
    """The Ray Serve application with `replicas` engine replicas (1 CPU core each)."""
    from ray import serve

    from server.ray.app import build_app
    from server.settings import Settings

    port = free_port()
    settings = Settings(demo=True, demo_dir=demo_dir, warmup=False, queue_size=64,
                        ray_min_replicas=replicas, ray_max_replicas=replicas,
                        ray_gpus_per_replica=0, ray_cpus_per_replica=0.9,
                        ray_ingress_cpus=0.1, results_dir=Path(tempfile.mkdtemp()))
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    try:
        serve.run(build_app(settings), name="kontext", route_prefix="/")
        url = f"http://127.0.0.1:{port}"
        wait_ready(url, timeout=600)
        runs = [load(url, f"Ray Serve, {replicas} replica{'s' * (replicas > 1)}", "ray",
                     replicas, args)]
        if latency:
            runs.append(sequential(url, "Ray Serve, 1 replica", args))
        return runs
    finally:
        serve.shutdown()


def ms(values: list[float], q: float) -> str:
    return f"{percentile(values, q) * 1000:.1f}"


def table(runs: list[Run]) -> list[str]:
    lines = ["| configuration | engines | jobs/s | p50 latency (s) | p95 latency (s) | "
             "× 1 engine |", "|---|---|---|---|---|---|"]
    base: dict[str, float] = {}
    for run in runs:
        base.setdefault(run.family, run.jobs_per_second)
        ratio = run.jobs_per_second / base[run.family]
        lines.append(f"| {run.name} | {run.engines} | {run.jobs_per_second:.3f} | "
                     f"{percentile(run.latencies, .5):.2f} | {percentile(run.latencies, .95):.2f}"
                     f" | {ratio:.2f}× |")
    return lines


def overhead_table(local: Run, ray_run: Run) -> list[str]:
    added = statistics.median(ray_run.overheads) - statistics.median(local.overheads)
    return ["| per request, round trip − engine time | p50 (ms) | p95 (ms) |", "|---|---|---|",
            f"| in-process server (`--devices cpu --device-workers thread`) | "
            f"{ms(local.overheads, .5)} | {ms(local.overheads, .95)} |",
            f"| Ray Serve (proxy → ingress → engine replica) | {ms(ray_run.overheads, .5)} | "
            f"{ms(ray_run.overheads, .95)} |",
            f"| **added by Ray** (difference of the p50s) | **{added * 1000:.1f}** | |"]


def environment() -> str:
    import torch

    return (f"{platform.machine()}, {os.cpu_count()} cores; Python "
            f"{platform.python_version()}, torch {torch.__version__}, diffusers "
            f"{version('diffusers')}, ray {version('ray')}, uvicorn {version('uvicorn')}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=16)
    parser.add_argument("--latency-jobs", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=2, help="jobs in flight per engine")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--write-results", action="store_true")
    args = parser.parse_args()

    import ray

    from pipelines.weights.tiny import write_tiny_checkpoint

    demo_dir = write_tiny_checkpoint(Path(tempfile.mkdtemp()) / "tiny")
    runs: list[Run] = []
    runs += run_local("cpu", "process", demo_dir, args)
    runs += run_local("cpu,cpu", "process", demo_dir, args)
    thread_runs = run_local("cpu", "thread", demo_dir, args, latency=True)
    runs += [thread_runs[0]]
    runs += run_local("cpu,cpu", "thread", demo_dir, args)
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}})
    try:
        ray_runs = run_ray(1, demo_dir, args, latency=True)
        runs += [ray_runs[0]]
        runs += run_ray(2, demo_dir, args)
    finally:
        ray.shutdown()
    report(runs, thread_runs[1], ray_runs[1], args)


def report(runs: list[Run], local_seq: Run, ray_seq: Run, args) -> None:
    command = ("python benchmarks/scale_benchmark.py " + " ".join(sys.argv[1:])).strip()
    lines = [f"Tiny checkpoint on CPU, {args.size}², {args.steps} steps, {args.jobs} jobs per "
             f"configuration with {args.concurrency} per engine in flight (after one warm-up "
             "job per engine); latency per job, queueing included. Ratios are to the same "
             "family's 1-engine run, measured in the same run.", "",
             f"Command: `{command.replace(' --write-results', '')}`", "",
             f"Hardware: {environment()}.", "", *table(runs), "",
             f"Dispatch latency, {args.latency_jobs} jobs one at a time on one engine:", "",
             *overhead_table(local_seq, ray_seq)]
    print("\n".join(lines))
    if args.write_results:
        write_section("Scale-out (issue 11): devices and Ray Serve replicas", lines)


if __name__ == "__main__":
    main()
