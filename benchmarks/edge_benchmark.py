"""The HTTP edge (issue 16), measured: which server, what the limits cost, what an attack
does now, and a soak.

1. Servers compared on the same app (real routes, fake engine): uvicorn with httptools
   (what ran before), uvicorn with plain h11, uvicorn h11 + this project's edge (chosen),
   Granian and Hypercorn when importable. Healthz throughput, a 9 MiB job, a 1 MiB header
   never ended, /healthz during 4 × 16 MiB headers, a 50-connection slowloris.
2. The chosen server under the issue's scenarios: 40 and 80 parallel 9 MiB uploads
   against a queue of 4 (when each answer came, how much of its body had been sent, peak
   RSS), four 1 MiB headers.
3. A soak: clients sending sync and async jobs, probes and oversized headers; RSS and open
   descriptors before and after, statuses.

    PYTHONPATH=$PWD:$PWD/tests python benchmarks/edge_benchmark.py --soak-seconds 60 \\
        --write-results
    # Granian/Hypercorn: install them outside the project's venv and add that folder:
    pip install --target /tmp/edgebench-pkgs granian==2.8.7 hypercorn==0.18.0
    EDGE_EXTRA_PATH=/tmp/edgebench-pkgs PYTHONPATH=... python benchmarks/edge_benchmark.py
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import date
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import httpx2
from edge_probes import (
    CONFIG,
    DEV,
    MIB,
    big_header,
    fds,
    healthz_during_big_headers,
    healthz_rate,
    noise_upload,
    parallel_uploads,
    slowloris,
    upload_seconds,
)
from edge_protocol_cpu import protocol_cpu
from PIL import Image

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
#: Header timeout given to every server that has one, so the slowloris ends in the run.
HEADER_TIMEOUT = 2


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


CHOSEN = "uvicorn h11 + edge (chosen)"


def command_for(name: str, port: int) -> list[str]:
    """The command line that serves the benchmark app with server `name` on `port`."""
    py, app = sys.executable, str(HERE / "edge_app.py")
    return {
        "uvicorn httptools (before)": [py, app, "httptools", str(port)],
        "uvicorn h11, no additions": [py, app, "h11", str(port)],
        CHOSEN: [py, app, "edge", str(port)],
        "granian (1 worker)": [py, "-m", "granian", "--interface", "asgi", "--factory",
                               "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
                               "--http1-header-read-timeout", str(HEADER_TIMEOUT * 1000),
                               "--no-log", "edge_app:make_app"],
        "hypercorn": [py, "-m", "hypercorn", "--bind", f"127.0.0.1:{port}", "--read-timeout",
                      str(HEADER_TIMEOUT), "edge_app:make_app()"],
    }[name]


def available_servers() -> list[str]:
    """The servers of section 1 that can run here (Granian, Hypercorn: when importable)."""
    names = ["uvicorn httptools (before)", "uvicorn h11, no additions", CHOSEN]
    return names + [name for name, module in (("granian (1 worker)", "granian"),
                                              ("hypercorn", "hypercorn"))
                    if _importable(module)]


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KONTEXT_")}
    paths = [str(ROOT), str(ROOT / "tests"), str(HERE), os.environ.get("EDGE_EXTRA_PATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    env["KONTEXT_HEADER_TIMEOUT_SECONDS"] = str(HEADER_TIMEOUT)
    env["KONTEXT_RESULTS_DIR"] = str(Path(os.environ.get("TMPDIR", "/tmp")) / "edge-results")
    env.update(extra or {})
    return env


def _importable(module: str) -> bool:
    done = subprocess.run([sys.executable, "-c", f"import {module}"], env=_env(),
                          capture_output=True, check=False)
    return done.returncode == 0


class Server:
    """A server in a subprocess, started and awaited, stopped on exit."""

    def __init__(self, command: list[str], port: int, env: dict[str, str] | None = None):
        self.port = port
        self.proc = subprocess.Popen(command, cwd=HERE, env=_env(env),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def __enter__(self) -> Server:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx2.get(f"http://127.0.0.1:{self.port}/readyz", timeout=2
                             ).status_code == 200:
                    return self
            except httpx2.TransportError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.1)

    def __exit__(self, *_exc) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def compare_servers(body: bytes) -> list[list[str]]:
    """One row per server: the edge measures of section 1."""
    rows = []
    for name in available_servers():
        port = free_port()
        with Server(command_for(name, port), port) as server:
            rate = healthz_rate(port)
            job = upload_seconds(port, body)
            status, seconds = big_header(port)
            attack = healthz_during_big_headers(port, server.proc.pid)
            still_open, loris_seconds = slowloris(port)
        header = f"{status} in {seconds:.2f} s" if status else f"no answer in {seconds:.0f} s"
        loris = (f"all closed in {loris_seconds:.1f} s" if not still_open
                 else f"{still_open}/50 open after {loris_seconds:.0f} s")
        rows.append([name, f"{rate:.0f}", f"{job * 1000:.0f}", header,
                     f"{max(attack.healthz_ms):.0f} ({len(attack.healthz_ms)} probes)",
                     f"{dict(attack.attack_statuses)} in {attack.attack_seconds:.1f} s",
                     f"{attack.rss_growth_mib:.0f}", loris])
        print(" | ".join(rows[-1]), flush=True)
    return rows


def uvicorn_ab(body: bytes, rounds: int = 5) -> list[list[str]]:
    """The three uvicorn variants served at once and measured in turn, `rounds` times: the
    medians compare them under the same (shared, drifting) machine load."""
    names = ["uvicorn httptools (before)", "uvicorn h11, no additions", CHOSEN]
    ports = {name: free_port() for name in names}
    rates: dict[str, list[float]] = {name: [] for name in names}
    jobs: dict[str, list[float]] = {name: [] for name in names}
    servers = [Server(command_for(name, ports[name]), ports[name]) for name in names]
    try:
        for server in servers:
            server.__enter__()
        for _ in range(rounds):
            for name in names:
                rates[name].append(healthz_rate(ports[name], seconds=2))
                jobs[name].append(upload_seconds(ports[name], body, runs=1))
    finally:
        for server in servers:
            server.__exit__()
    base = statistics.median(rates[names[0]])
    return [[name, f"{statistics.median(rates[name]):.0f}",
             f"{statistics.median(rates[name]) / base:.2f}",
             f"{statistics.median(jobs[name]) * 1000:.0f}"] for name in names]


def scenarios(body: bytes) -> list[list[str]]:
    """Section 2: the chosen server, queue of 4, jobs slow enough to keep it full."""
    rows = []
    port = free_port()
    env = {"KONTEXT_QUEUE_SIZE": "4", "EDGE_STEP_SECONDS": "0.5"}
    for count in (40, 80):
        with Server(command_for(CHOSEN, port), port, env) as server:
            results, before, peak = parallel_uploads(port, server.proc.pid, body, count)
        refused = [r for r in results if r.status == 429]
        statuses = Counter(r.status for r in results)
        seconds = sorted(r.seconds for r in refused)
        sent = sorted(r.sent / len(body) for r in refused)
        rows.append([f"{count} × 9 MiB uploads, queue 4", str(dict(statuses)),
                     f"{seconds[len(seconds) // 2]:.2f} / {seconds[-1]:.2f}" if refused
                     else "-",
                     f"{sent[len(sent) // 2]:.1%} / {sent[-1]:.1%}" if refused else "-",
                     f"{before / MIB:.0f} → {peak / MIB:.0f}"])
        print(" | ".join(rows[-1]), flush=True)
    with Server(command_for(CHOSEN, port), port):
        headers = [big_header(port) for _ in range(4)]
    rows.append(["4 × 1 MiB header, one after another", str({s for s, _ in headers}),
                 f"{max(t for _, t in headers):.3f}", "-", "-"])
    return rows


def soak(seconds: float, clients: int, body: bytes, env: dict[str, str] | None = None
         ) -> list[list[str]]:
    """Section 3: `clients` loops of mixed requests for `seconds`; RSS and fds around it
    (`env`: extra environment of the server)."""
    port = free_port()
    small = _png(640, 480)
    with Server(command_for(CHOSEN, port), port, env) as server:
        pid = server.proc.pid
        from edge_probes import MemoryWatch

        rss_before, fds_before = MemoryWatch(pid).now(), fds(pid)
        statuses: Counter = Counter()
        deadline = time.monotonic() + seconds
        lock = threading.Lock()

        def client(index: int) -> None:
            with httpx2.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
                turn = index
                while time.monotonic() < deadline:
                    turn += 1
                    status = _one_soak_request(http, port, turn, small, body)
                    with lock:
                        statuses[status] += 1

        threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
        for thread in threads:
            thread.start()
        samples = []
        while any(thread.is_alive() for thread in threads):  # RSS every quarter of the run
            time.sleep(seconds / 4)
            samples.append(f"{MemoryWatch(pid).now() / MIB:.0f}")
        for thread in threads:
            thread.join()
        time.sleep(2)  # the server closes idle keep-alives and finishes async jobs
        rss_after, fds_after = MemoryWatch(pid).now(), fds(pid)
    fivexx = sum(n for s, n in statuses.items() if isinstance(s, int) and s >= 500)
    return [[f"{clients} clients × {seconds:.0f} s", str(dict(sorted(statuses.items(),
                                                                 key=str))),
             str(fivexx), f"{rss_before / MIB:.0f} → {' → '.join(samples)} → "
             f"{rss_after / MIB:.0f}", f"{fds_before} → {fds_after}"]]


def _one_soak_request(http: httpx2.Client, port: int, turn: int, small: bytes,
                      body: bytes) -> int | str:
    files = [("input", ("in.png", small, "image/png")),
             ("job", ("job.json", f'{{"type":"{DEV}","config":{{"prompt":"soak","width":512,'
                      f'"height":512,"steps":2}}}}'.encode(), "application/json"))]
    kind = turn % 6
    try:
        if kind == 0:
            return http.post("/v2/job", files=files).status_code
        if kind == 1:
            submitted = http.post("/v2/job/async", files=files)
            return submitted.status_code
        if kind == 2:
            return http.get("/healthz").status_code
        if kind == 3:
            return big_header(port, size=256 * 1024, wait=10)[0] or "no answer"
        if kind == 4:
            return http.post("/v2/job", content=body, headers={
                "Content-Type": "multipart/form-data; boundary=edge-bench"}).status_code
        return http.get("/metrics").status_code
    except httpx2.HTTPError as exc:
        return type(exc).__name__


def _png(width: int, height: int) -> bytes:
    import io

    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (90, 140, 200)).save(buffer, "PNG")
    return buffer.getvalue()


def _version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "-"


def render(servers, ab, cases, soaked, args) -> str:
    table = [
        "## The HTTP edge (issue 16)", "", f"_Measured {date.today().isoformat()}._", "",
        "Same app (real routes and admission, the tests' fake engine) in each server, on "
        "loopback, load generator on the same 2-core machine (shared with other work: "
        "compare within a table, not across runs). Header timeout "
        f"{HEADER_TIMEOUT} s wherever the server has one (Hypercorn's `--read-timeout` is "
        "an idle timeout).", "",
        f"Command: `PYTHONPATH=$PWD:$PWD/tests EDGE_EXTRA_PATH=/tmp/edgebench-pkgs python "
        f"benchmarks/edge_benchmark.py --soak-seconds {args.soak_seconds:g} --soak-clients "
        f"{args.soak_clients} --write-results`", "",
        f"Hardware: {platform.machine()}, {os.cpu_count()} cores; Python "
        f"{platform.python_version()}, uvicorn {_version('uvicorn')}, h11 {_version('h11')}, "
        f"httptools {_version('httptools')}.", "",
        "| server | /healthz req/s (8 clients) | 9 MiB job (ms) | 1 MiB header, never ended "
        "| /healthz max ms during 4 × 16 MiB headers | those 4 answered | server RSS growth "
        "(MiB) | 50-connection slowloris |", "|---|---|---|---|---|---|---|---|"]
    table += ["| " + " | ".join(row) + " |" for row in servers]
    table += ["", "The three uvicorn variants served at once and measured in turn "
              f"({args.ab_rounds} rounds; medians), so that the machine's load falls on each "
              "alike; and the CPU each protocol spends per request with no network "
              "(`benchmarks/edge_protocol_cpu.py`, median of 3 × 20,000 requests):", "",
              "| server | CPU per request (µs) | /healthz req/s (8 clients) | ratio to "
              "httptools | 9 MiB job (ms) |", "|---|---|---|---|---|"]
    table += ["| " + " | ".join(row) + " |" for row in ab]
    table += ["", "The chosen server, queue of 4 (jobs of 1 s on the fake engine), uploads "
              "sent in 256 KiB chunks, each client stopping as soon as an answer is readable:",
              "", "| case | statuses | 429 arrived after (s), median / slowest | share of "
              "its body sent when a 429 arrived, median / most | server RSS before → peak "
              "(MiB) |", "|---|---|---|---|---|"]
    table += ["| " + " | ".join(row) + " |" for row in cases]
    table += ["", "Soak: each client loops over a sync job, an async job, /healthz, a 256 KiB "
              "header, a 9 MiB job and /metrics:", "",
              "| run | answers | 5xx | server RSS before → each quarter → after (MiB) | open "
              "fds before → after |", "|---|---|---|---|---|"]
    table += ["| " + " | ".join(row) + " |" for row in soaked]
    return "\n".join(table) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--soak-seconds", type=float, default=60)
    parser.add_argument("--soak-clients", type=int, default=8)
    parser.add_argument("--skip-servers", action="store_true")
    parser.add_argument("--ab-rounds", type=int, default=5)
    parser.add_argument("--soak-only", action="store_true",
                        help="only the soak (e.g. to compare MALLOC_* environments)")
    parser.add_argument("--soak-env", nargs="*", default=[],
                        help="KEY=VALUE for the soak's server (e.g. KONTEXT_CLIENT_SHARE=1)")
    parser.add_argument("--write-results", action="store_true")
    args = parser.parse_args()
    body = noise_upload({**CONFIG, "steps": 2})
    if args.soak_only:
        env = dict(pair.split("=", 1) for pair in args.soak_env)
        print(soak(args.soak_seconds, args.soak_clients, body, env))
        return 0
    servers = [] if args.skip_servers else compare_servers(body)
    ab = uvicorn_ab(body, args.ab_rounds)
    cpu = protocol_cpu()
    for row in ab:
        row.insert(1, f"{cpu[row[0]]:.0f}")
    cases = scenarios(noise_upload({**CONFIG, "steps": 2}))
    soaked = soak(args.soak_seconds, args.soak_clients, body)
    text = render(servers, ab, cases, soaked, args)
    print(text)
    if args.write_results:
        with (HERE / "RESULTS.md").open("a") as results:
            results.write("\n" + text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
