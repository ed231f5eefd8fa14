"""A bounded load test of a /v2/job server: N concurrent clients for a fixed time.

Every client posts dev-kontext jobs back to back (multipart, one small PNG input); on 429 it
waits Retry-After seconds as the official client does. Afterwards it reports the answers by
status, p50/p95 latency, completed jobs per second, and the server's resident memory before
and after. The suite's test (tests/test_load.py) imports `run_load` from here.

    # start `kontext serve --demo` as a subprocess, 100 clients for 30 s, record the numbers
    python benchmarks/load_test.py --clients 100 --duration 30 --write-results
    # or against a server that is already running
    python benchmarks/load_test.py --url http://127.0.0.1:8000 --clients 50 --duration 60
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

import httpx2
import psutil
from PIL import Image

DEV = "inference.flux-fast.dev-kontext.img2img.v1"
DEFAULT_CONFIG = {"prompt": "make it look like a watercolour", "width": 512, "height": 512,
                  "steps": 4, "seed": 1}


@dataclass
class LoadResult:
    """What the clients saw."""

    clients: int
    #: Seconds during which new jobs were posted.
    duration: float
    #: Seconds until the last answer arrived (jobs in flight at the deadline are awaited).
    elapsed: float = 0.0
    statuses: Counter = field(default_factory=Counter)
    #: Seconds per answer, by status.
    latencies: dict[int, list[float]] = field(default_factory=dict)
    #: 1-minute load average of the machine when the run started (shared machines vary).
    load_average: float = 0.0
    #: 429 answers without a usable integer Retry-After header.
    missing_retry_after: int = 0
    #: Connection-level failures (the server reset or refused a connection).
    transport_errors: list[str] = field(default_factory=list)
    #: 200 answers whose job JSON did not say `completed`.
    incomplete: int = 0

    @property
    def requests(self) -> int:
        """Answers received (any status)."""
        return sum(self.statuses.values())

    def percentile(self, q: float, status: int | None = None) -> float:
        """Latency in seconds at quantile `q` (0–1) of answers with `status` (None: all)."""
        values = [v for s, vs in self.latencies.items() if status in (None, s) for v in vs]
        if len(values) < 2:
            return values[0] if values else float("nan")
        return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]

    @property
    def jobs_per_second(self) -> float:
        """Completed jobs per second, until the last answer."""
        return self.statuses[200] / self.elapsed if self.elapsed else 0.0


def small_png(side: int = 320) -> bytes:
    """The input image every job sends (the server takes 256–1920 px per side)."""
    buffer = io.BytesIO()
    Image.linear_gradient("L").resize((side, side)).convert("RGB").save(buffer, "PNG")
    return buffer.getvalue()


async def _one_job(client: httpx2.AsyncClient, url: str, files: list, headers: dict,
                   result: LoadResult) -> float:
    """Post one job; record it; return how long to wait before the next (Retry-After)."""
    started = time.perf_counter()
    try:
        reply = await client.post(f"{url}/v2/job", files=files, headers=headers)
    except httpx2.TransportError as exc:
        result.transport_errors.append(f"{type(exc).__name__}: {exc}"[:120])
        return 0.5
    result.latencies.setdefault(reply.status_code, []).append(time.perf_counter() - started)
    result.statuses[reply.status_code] += 1
    if reply.status_code == 200 and reply.json()["state"]["current"] != "completed":
        result.incomplete += 1
    if reply.status_code == 429:
        retry_after = reply.headers.get("retry-after", "")
        if not retry_after.isdigit():
            result.missing_retry_after += 1
            return 1.0
        return float(retry_after)
    return 0.0


async def run_load(url: str, clients: int = 100, duration: float = 30.0,
                   config: dict | None = None, image: bytes | None = None,
                   token: str | None = None, max_wait: float = 5.0) -> LoadResult:
    """`clients` concurrent clients post jobs to `url` for `duration` seconds.

    No job is started after the deadline; jobs in flight then are awaited, so every
    accepted job is counted. Retry-After waits are capped at `max_wait` seconds.
    """
    job = json.dumps({"type": DEV, "config": config or DEFAULT_CONFIG}).encode()
    files = [("input", ("input.png", image or small_png(), "image/png")),
             ("job", ("job.json", job, "application/json"))]
    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    result = LoadResult(clients, duration, load_average=os.getloadavg()[0])
    deadline = time.monotonic() + duration

    async def client_loop(client: httpx2.AsyncClient) -> None:
        while time.monotonic() < deadline:
            wait = await _one_job(client, url, files, headers, result)
            await asyncio.sleep(min(wait, max_wait, max(0.0, deadline - time.monotonic())))

    # Idle connections are dropped after 2 s, before uvicorn's 5 s keep-alive closes them:
    # httpx2's default expiry is also 5 s, and a request written into a connection the
    # server is closing at that instant is reset (the HTTP/1.1 keep-alive race), which
    # would be counted here as a connection error that says nothing about load.
    limits = httpx2.Limits(max_connections=clients, max_keepalive_connections=clients,
                          keepalive_expiry=2.0)
    async with httpx2.AsyncClient(timeout=httpx2.Timeout(300, connect=30), limits=limits) as c:
        started = time.monotonic()
        await asyncio.gather(*(client_loop(c) for _ in range(clients)))
        result.elapsed = time.monotonic() - started
    return result


def rss_mb(pid: int) -> float:
    """Resident memory of process `pid` in MiB."""
    return psutil.Process(pid).memory_info().rss / (1024 * 1024)


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def spawn_demo(port: int, queue_size: int, log_path: Path) -> subprocess.Popen:
    """`kontext serve --demo` on loopback in a subprocess; returns once /readyz is 200."""
    command = [sys.executable, "-m", "server.cli.main", "serve", "--demo", "--host", "127.0.0.1",
               "--port", str(port), "--queue-size", str(queue_size), "--log-level", "warning"]
    log = log_path.open("w")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                               cwd=Path(__file__).resolve().parent.parent)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"kontext serve exited {process.returncode}; see {log_path}")
        try:
            if httpx2.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return process
        except httpx2.TransportError:
            pass
        time.sleep(0.5)
    process.terminate()
    raise TimeoutError(f"demo server not ready after 300 s; see {log_path}")


def report_lines(result: LoadResult, rss_before: float, rss_after: float) -> list[str]:
    """The measured numbers as a markdown table."""
    others = {s: n for s, n in result.statuses.items() if s not in (200, 429)}
    rows = [
        ("clients", f"{result.clients}"), ("posting new jobs for (s)", f"{result.duration:g}"),
        ("until the last answer (s)", f"{result.elapsed:.1f}"),
        ("requests answered", f"{result.requests}"),
        ("200 (completed)", f"{result.statuses[200]}"),
        ("429 (queue full, with Retry-After)", f"{result.statuses[429]}"),
        ("other statuses", f"{others or 'none'}"),
        ("429 without Retry-After", f"{result.missing_retry_after}"),
        ("connection errors", f"{len(result.transport_errors)}"
         + (f" ({'; '.join(sorted(set(result.transport_errors)))})"
            if result.transport_errors else "")),
        ("latency of 200s p50 / p95 (s)",
         f"{result.percentile(0.50, 200):.3f} / {result.percentile(0.95, 200):.3f}"),
        ("latency of 429s p50 / p95 (s)",
         f"{result.percentile(0.50, 429):.3f} / {result.percentile(0.95, 429):.3f}"),
        ("latency of all answers p50 / p95 (s)",
         f"{result.percentile(0.50):.3f} / {result.percentile(0.95):.3f}"),
        ("completed jobs/s", f"{result.jobs_per_second:.2f}"),
        ("server RSS before → after (MiB)", f"{rss_before:.0f} → {rss_after:.0f}"),
        ("machine load average (1 min) at start", f"{result.load_average:.2f}"),
    ]
    return ["| measure | value |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)]


def hardware() -> str:
    """CPU model and core count, and the versions that matter here."""
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                 if line.startswith("model name")]
        cpu = names[0] if names else cpu
    packages = ", ".join(f"{name} {version(name)}" for name in
                         ("torch", "diffusers", "uvicorn", "httpx2", "starlette"))
    return (f"{cpu}, {os.cpu_count()} cores; Python {platform.python_version()}, "
            f"{packages}.")


def main(argv: list[str] | None = None) -> int:
    """Run the load test and print (and optionally record) its numbers."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="an already running server (default: spawn --demo)")
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--duration", type=float, default=30.0, help="seconds")
    parser.add_argument("--queue-size", type=int, default=16, help="for the spawned server")
    parser.add_argument("--steps", type=int, default=DEFAULT_CONFIG["steps"])
    parser.add_argument("--token", help="bearer token, if the server wants one")
    parser.add_argument("--write-results", action="store_true",
                        help="write the section 'Load test (demo server, CPU)' of RESULTS.md")
    args = parser.parse_args(argv)
    config = {**DEFAULT_CONFIG, "steps": args.steps}
    process, url = None, args.url
    if url is None:
        port = free_port()
        process = spawn_demo(port, args.queue_size, Path(tempfile.gettempdir()) / "load.log")
        url = f"http://127.0.0.1:{port}"
    try:
        pid = process.pid if process else None
        rss_before = rss_mb(pid) if pid else float("nan")
        result = asyncio.run(run_load(url, args.clients, args.duration, config,
                                      token=args.token))
        rss_after = rss_mb(pid) if pid else float("nan")
    finally:
        if process is not None:
            process.terminate()
            process.wait(timeout=60)
    lines = report_lines(result, rss_before, rss_after)
    print("\n".join(lines))
    if args.write_results:
        _write(args, config, lines)
    bad = [s for s in result.statuses if s not in (200, 429)]
    return 1 if bad or result.missing_retry_after or result.transport_errors else 0


def _write(args: argparse.Namespace, config: dict, lines: list[str]) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from benchmarks_results import write_section

    command = (f"python benchmarks/load_test.py --clients {args.clients} --duration "
               f"{args.duration:g} --queue-size {args.queue_size} --steps {args.steps} "
               "--write-results")
    intro = [
        f"{args.clients} concurrent asyncio httpx2 clients post dev-kontext jobs "
        f"({config['width']}×{config['height']}, {config['steps']} steps, one 320×320 PNG "
        f"input, Accept: application/json) for {args.duration:g} s to `kontext serve --demo` "
        f"(tiny random checkpoint on CPU, queue size {args.queue_size}) on loopback. A client "
        "that gets 429 waits its Retry-After (at most 5 s); jobs in flight when posting stops "
        "are awaited. The load generator runs on the same machine as the server. The suite "
        "runs a shorter version against a fake engine (tests/test_load.py). For a longer "
        "soak, raise `--duration` (e.g. 300) and `--clients`; `--url` points it at a "
        "running server.",
        "", f"Command: `{command}`", "", f"Hardware: {hardware()}", "",
    ]
    write_section("Load test (demo server, CPU)", intro + lines)


if __name__ == "__main__":
    raise SystemExit(main())
