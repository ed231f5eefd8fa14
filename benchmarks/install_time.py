"""How long the README's demo command takes to reach a ready server on a fresh machine.

For each git ref: a fresh clone into a temporary folder (so a fresh `.venv`, and empty pip
and uv caches there, as on a fresh machine), then the two halves of `./scripts/demo.sh`
timed apart: `./scripts/install.sh` (creating the environment) and `.venv/bin/kontext
serve --demo` until `/readyz` answers 200 (the tiny checkpoint is written to the clone's
own cache folder too, as on a fresh machine). Refs run in the order
given, alternating when repeated, so a before/after pair shares the machine's conditions.
Standard library only: it runs before any environment exists.

    python3 benchmarks/install_time.py --ref main --ref HEAD --runs 2 --write
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
READY_TIMEOUT = 600.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return answer.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _fresh_env(root: Path) -> dict[str, str]:
    """The environment with empty package caches and an empty home cache under `root`."""
    return {**os.environ, "PIP_CACHE_DIR": str(root / "pip-cache"),
            "UV_CACHE_DIR": str(root / "uv-cache"), "XDG_CACHE_HOME": str(root / "cache")}


def _serve_until_ready(clone: Path) -> float:
    """Seconds from starting `kontext serve --demo` to /readyz 200; the server is stopped."""
    port = _free_port()
    started = time.monotonic()
    server = subprocess.Popen([str(clone / ".venv/bin/kontext"), "serve", "--demo",
                               "--port", str(port)], cwd=clone, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, env=_fresh_env(clone.parent))
    try:
        while not _ready(f"http://127.0.0.1:{port}/readyz"):
            if server.poll() is not None:
                raise RuntimeError(f"kontext serve exited with {server.returncode}")
            if time.monotonic() - started > READY_TIMEOUT:
                raise RuntimeError("not ready in time")
            time.sleep(0.2)
        return time.monotonic() - started
    finally:
        server.terminate()
        server.wait(timeout=60)


def measure(ref: str) -> tuple[float, float, str]:
    """(install seconds, serve-to-ready seconds, commit) for a fresh clone of `ref`."""
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", ref], check=True,
                            capture_output=True, text=True).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="kontext-install-") as tmp:
        clone = Path(tmp) / "kontext-server"
        subprocess.run(["git", "clone", "-q", "--no-checkout", str(ROOT), str(clone)],
                       check=True)
        subprocess.run(["git", "-C", str(clone), "checkout", "-q", commit], check=True)
        started = time.monotonic()
        subprocess.run(["./scripts/install.sh"], cwd=clone, check=True,
                       stdout=subprocess.DEVNULL, env=_fresh_env(Path(tmp)))
        installed = time.monotonic() - started
        return installed, _serve_until_ready(clone), commit[:10]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ref", action="append", required=True, help="git ref (repeatable)")
    parser.add_argument("--runs", type=int, default=1, help="runs per ref, alternating")
    parser.add_argument("--write", action="store_true", help="write RESULTS.md's section")
    args = parser.parse_args()
    results: dict[str, list[tuple[float, float, str]]] = {ref: [] for ref in args.ref}
    for _ in range(args.runs):
        for ref in args.ref:
            results[ref].append(measure(ref))
            install, ready, commit = results[ref][-1]
            print(f"{ref} ({commit}): install {install:.1f} s, serve→ready {ready:.1f} s",
                  flush=True)
    lines = ["| ref | commit | install.sh (s) | serve → ready (s) | demo.sh → ready (s) |",
             "|---|---|---|---|---|"]
    for ref, runs in results.items():
        install = statistics.median(r[0] for r in runs)
        ready = statistics.median(r[1] for r in runs)
        lines.append(f"| `{ref}` | {runs[0][2]} | {install:.1f} | {ready:.1f} | "
                     f"{install + ready:.1f} |")
    print("\n".join(lines))
    if args.write:
        sys.path.insert(0, str(Path(__file__).parent))
        from benchmarks_results import write_section

        uv = shutil.which("uv") or "not on PATH"
        refs = " ".join(f"--ref {ref}" for ref in args.ref)
        lines += ["", f"Median of {args.runs} run(s) per ref, alternating. Command: "
                  f"`python3 benchmarks/install_time.py {refs} --runs {args.runs} --write`. "
                  f"Machine: {platform.machine()}, {os.cpu_count()} cores shared with other "
                  f"work, Python {platform.python_version()}, uv before the run: {uv}."]
        write_section("Fresh install to a ready demo server", lines)


if __name__ == "__main__":
    main()
