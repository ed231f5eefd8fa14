"""Server memory during a mixed soak of the demo server (`kontext serve --demo`: the tiny
real pipeline on the CPU): RSS every few seconds, and idle after.

Clients loop over a mix: synchronous jobs of several sizes and step counts, async jobs
(submitted, polled, their output downloaded), a 3 MB upload, refused requests (a bad image,
a bad config), /healthz and /metrics. The same mix, the same seed, in every run; extra
environment (KEY=VALUE) lets runs compare allocator settings.

    PYTHONPATH=$PWD:$PWD/tests .venv/bin/python benchmarks/soak_memory.py --seconds 150 \\
        [--env MALLOC_ARENA_MAX=2 ...] [--label ...] [--write-results]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx2
from benchmarks_results import write_section
from edge_benchmark import free_port
from edge_probes import MIB, MemoryWatch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
DEV = "inference.flux-fast.dev-kontext.img2img.v1"
SIZES = [(512, 512), (768, 512), (512, 768), (1024, 1024), (1040, 592)]


def _png(width: int, height: int, noise: bool = False) -> bytes:
    image = Image.frombytes("RGB", (width, height), os.urandom(width * height * 3)) \
        if noise else Image.new("RGB", (width, height), (90, 140, 200))
    buffer = io.BytesIO()
    image.save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


def _photo(width: int, height: int) -> bytes:
    """A phone-sized JPEG (the largest side the contract takes), with structure."""
    image = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


SMALL, BIG, PHOTO = _png(640, 480), _png(1000, 1000, noise=True), _photo(1920, 1440)


def _files(image: bytes, config: dict) -> list:
    return [("input", ("in.png", image, "image/png")),
            ("job", ("job.json", json.dumps({"type": DEV, "config": config}).encode(),
                     "application/json"))]


def _one(http: httpx2.Client, rng: random.Random) -> int | str:
    width, height = rng.choice(SIZES)
    config = {"prompt": "soak", "width": width, "height": height, "steps": rng.choice([1, 2])}
    kind = rng.randrange(9)
    try:
        if kind in (0, 1):
            return http.post("/v2/job", files=_files(SMALL, config),
                             headers={"Accept": rng.choice(["image/png", "image/jpeg"])}
                             ).status_code
        if kind == 2:
            return _async_job(http, config)
        if kind == 3:
            return http.post("/v2/job", files=_files(rng.choice([BIG, PHOTO]), config)
                             ).status_code
        if kind == 4:
            return http.post("/v2/job", files=_files(SMALL[:400], config)).status_code
        if kind == 5:
            return http.post("/v2/job", files=_files(SMALL, {**config, "steps": 99})
                             ).status_code
        return http.get(rng.choice(["/healthz", "/metrics", "/readyz"])).status_code
    except httpx2.HTTPError as exc:
        return type(exc).__name__


def _async_job(http: httpx2.Client, config: dict) -> int:
    created = http.post("/v2/job/async", files=_files(SMALL, config))
    if created.status_code != 201:
        return created.status_code
    job_id = created.json()["id"]
    while (state := http.get(f"/v2/job/async/{job_id}/job.state.current").text) \
            == "processing":
        time.sleep(0.2)
    if state == "processed":
        return http.get(f"/v2/job/async/{job_id}/output/output.jpg").status_code
    return 500


def _serve(port: int, env: dict[str, str], workdir: Path, root: Path) -> subprocess.Popen:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("KONTEXT_")}
    environment.update(env)
    environment["KONTEXT_RESULTS_DIR"] = str(workdir / "results")
    return subprocess.Popen(
        [sys.executable, "-m", "server.cli.main", "serve", "--demo", "--port", str(port),
         "--log-level", "warning", "--queue-size", "32"], cwd=root,
        env={**environment, "PYTHONPATH": str(root)},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def soak(seconds: float, clients: int, env: dict[str, str], root: Path = ROOT) -> dict:
    """Run the mix against a fresh server (the code of the checkout at `root`); RSS samples
    and answers."""
    port = free_port()
    with tempfile.TemporaryDirectory() as workdir:
        proc = _serve(port, env, Path(workdir), root)
        try:
            deadline = time.monotonic() + 300
            while True:
                try:
                    if httpx2.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                        break
                except httpx2.TransportError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the demo server did not start")
                time.sleep(0.5)
            return _drive(port, proc.pid, seconds, clients)
        finally:
            proc.terminate()
            proc.wait(timeout=90)


def _drive(port: int, pid: int, seconds: float, clients: int) -> dict:
    statuses: Counter = Counter()
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def client(index: int) -> None:
        rng = random.Random(index)
        with httpx2.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as http:
            while time.monotonic() < stop:
                status = _one(http, rng)
                with lock:
                    statuses[status] += 1

    start = MemoryWatch(pid).now()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    samples = []
    with MemoryWatch(pid) as watch:
        for thread in threads:
            thread.start()
        while any(thread.is_alive() for thread in threads):
            time.sleep(seconds / 6)
            samples.append(watch.now())
        for thread in threads:
            thread.join()
    time.sleep(5)  # idle: keep-alives closed, async jobs done
    return {"start": start, "samples": samples, "peak": watch.peak,
            "idle": MemoryWatch(pid).now(), "statuses": statuses}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=150)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--env", nargs="*", default=[], help="KEY=VALUE for the server")
    parser.add_argument("--label", default="as shipped")
    parser.add_argument("--server-root", type=Path, default=ROOT,
                        help="serve another checkout's code (e.g. an export of the code "
                        "before a change), with this script's load")
    parser.add_argument("--write-results", action="store_true")
    args = parser.parse_args()
    env = dict(pair.split("=", 1) for pair in args.env)
    found = soak(args.seconds, args.clients, env, args.server_root)
    mib = [f"{value / MIB:.0f}" for value in found["samples"]]
    row = (f"| {args.label} | {' '.join(args.env) or '-'} | {found['start'] / MIB:.0f} → "
           f"{' → '.join(mib)} | {found['peak'] / MIB:.0f} | {found['idle'] / MIB:.0f} | "
           f"{dict(sorted(found['statuses'].items(), key=str))} |")
    print(row)
    if args.write_results:
        write_section(f"Soak memory — {args.label}", [
            f"Command: `PYTHONPATH=$PWD:$PWD/tests python benchmarks/soak_memory.py "
            f"--seconds {args.seconds:g} --clients {args.clients}"
            f"{' --env ' + ' '.join(args.env) if args.env else ''}`", "",
            f"Hardware: {platform.machine()}, {os.cpu_count()} cores (shared); Python "
            f"{sys.version.split()[0]}.", "",
            "| run | server environment | RSS start → each sixth of the run (MiB) | peak | "
            "idle after | answers |", "|---|---|---|---|---|---|", row])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
