"""The process raises its open-file limit to what max_connections needs (run_app)."""

from __future__ import annotations

import os
import resource
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx2

from server.cli.http_edge import FD_RESERVE

TESTS = Path(__file__).parent.parent


def soft_limit_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    raise AssertionError("no open-file limit in /proc")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_serving_raises_the_open_file_limit_to_fit_max_connections():
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    wanted = 1500 + FD_RESERVE
    assert hard == resource.RLIM_INFINITY or hard >= wanted, "the hard limit is too low here"
    port, probes = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KONTEXT_")}
    env["KONTEXT_MAX_CONNECTIONS"] = "1500"
    env["KONTEXT_PROBE_PORT"] = str(probes)  # run_app listens there too
    proc = subprocess.Popen(
        [sys.executable, "-m", "helpers.fake_server", str(port), "0", "0"], cwd=TESTS, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        # The common default soft limit, well under what 1500 connections need.
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard)))
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx2.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx2.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "server did not start"
            time.sleep(0.05)
        assert soft_limit_of(proc.pid) == wanted
        assert httpx2.get(f"http://127.0.0.1:{probes}/readyz", timeout=5).status_code == 200
    finally:
        proc.terminate()
        output, _ = proc.communicate(timeout=30)
    assert f"raised the open-file limit from 1024 to {wanted}" in output
