"""SIGTERM on a real server process: accepted jobs finish, new ones get 503, exit code 0.

The process runs the FakeEngine app through the same run_app as `kontext serve`; jobs
forwarded to a fake upstream (HTTPS on loopback) are drained like local ones.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from helpers.async_api import wait_until
from helpers.fake_upstream import FakeUpstream, after, default_hosted, hang
from helpers.http import PRO_TXT, post_job
from helpers.images import image_bytes

PNG = image_bytes(640, 480)
CONFIG = {"prompt": "make it autumn", "width": 512, "height": 512}
TESTS = Path(__file__).parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """`fake_server.py` in a subprocess, with its URL."""

    def __init__(self, step_seconds: float, grace: float,
                 settings_env: dict[str, str] | None = None) -> None:
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("KONTEXT_")}
        env.update(settings_env or {})
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "helpers.fake_server", str(port), str(step_seconds),
             str(grace)],
            cwd=TESTS, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while not self._ready():
            assert self.proc.poll() is None, self.proc.communicate()[0]
            assert time.monotonic() < deadline, "server did not become ready"
            time.sleep(0.1)

    def _ready(self) -> bool:
        try:
            return httpx2.get(f"{self.url}/readyz", timeout=1).status_code == 200
        except httpx2.TransportError:
            return False

    def queue(self) -> dict:
        return httpx2.get(f"{self.url}/readyz", timeout=5).json()["queue"]

    def finish(self, timeout: float = 30) -> tuple[int, str]:
        """Wait for exit; the exit code and everything the process logged."""
        output, _ = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, output


@pytest.fixture
def start() -> Iterator:
    procs: list[ServerProcess] = []

    def _start(step_seconds: float, grace: float,
               settings_env: dict[str, str] | None = None) -> ServerProcess:
        procs.append(ServerProcess(step_seconds, grace, settings_env))
        return procs[-1]

    yield _start
    for server in procs:
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.communicate()


def submit(server: ServerProcess, steps: int, count: int) -> tuple[list, list]:
    """Start `count` jobs in threads and wait until one runs and the rest are queued."""
    replies: list[httpx2.Response] = []
    threads = [threading.Thread(target=lambda: replies.append(
        post_job(server.url, {**CONFIG, "steps": steps}, PNG, "application/json")))
        for _ in range(count)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 10
    while server.queue() != {"waiting": count - 1, "capacity": 16, "running": True}:
        assert time.monotonic() < deadline, server.queue()
        time.sleep(0.02)
    return threads, replies


def wait_not_ready(server: ServerProcess) -> httpx2.Response:
    deadline = time.monotonic() + 5
    while (reply := httpx2.get(f"{server.url}/readyz")).status_code == 200:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    return reply


def test_sigterm_drains_queued_and_running_jobs_then_exits_0(start):
    server = start(step_seconds=0.15, grace=30)
    threads, replies = submit(server, steps=5, count=3)
    server.proc.send_signal(signal.SIGTERM)
    ready = wait_not_ready(server)
    assert ready.status_code == 503 and ready.json()["ready"] is False
    refused = post_job(server.url, {**CONFIG, "steps": 1}, PNG, "application/json")
    assert refused.status_code == 503
    assert "shutting down" in refused.json()["error"]
    for thread in threads:
        thread.join(timeout=30)
    assert [r.status_code for r in replies] == [200, 200, 200]
    assert all(r.json()["state"]["current"] == "completed" for r in replies)
    code, output = server.finish()
    assert code == 0, output
    assert "drained: every job finished" in output


@pytest.mark.parametrize(("grace", "signals", "message"), [
    (0.5, 1, "shut down before the job finished (shutdown grace of 0.5 s)"),
    (30, 2, "told to stop at once"),
])
def test_grace_end_or_second_sigterm_fails_what_is_left(start, grace, signals, message):
    server = start(step_seconds=0.2, grace=grace)
    threads, replies = submit(server, steps=40, count=2)
    server.proc.send_signal(signal.SIGTERM)
    wait_not_ready(server)
    for _ in range(signals - 1):  # the server may be gone as soon as these land
        server.proc.send_signal(signal.SIGTERM)
    for thread in threads:
        thread.join(timeout=30)
    assert [r.status_code for r in replies] == [503, 503]
    for reply in replies:
        assert reply.json()["state"]["current"] == "failed"
        assert message in reply.json()["error"]
    code, output = server.finish()
    assert code == 0, output


def forwarding_env(fake: FakeUpstream) -> dict[str, str]:
    """Settings (as KONTEXT_* variables) that forward [pro]/[max] jobs to the fake."""
    return {"KONTEXT_UPSTREAM": "hosted", "KONTEXT_HOSTED_URL": f"{fake.url()}/v2",
            "KONTEXT_HOSTED_TOKEN_ENV": "TEST_HOSTED_TOKEN", "TEST_HOSTED_TOKEN": "srv-token",
            "KONTEXT_UPSTREAM_CA_FILE": str(fake.ca_file)}


def forward_one(server: ServerProcess, fake: FakeUpstream) -> tuple[threading.Thread, list]:
    """Send one [pro] txt2img job in a thread; return once upstream has it in hand."""
    replies: list[httpx2.Response] = []
    thread = threading.Thread(target=lambda: replies.append(httpx2.post(
        f"{server.url}/v2/job", json={"type": PRO_TXT, "config": {"prompt": "a lighthouse"}},
        headers={"Accept": "application/json"}, timeout=60)))
    thread.start()
    wait_until(lambda: fake.requests("hosted"), what="the job reached upstream")
    return thread, replies


def test_sigterm_waits_for_a_forwarded_job_and_answers_it(start, fake):
    fake.reset()
    fake.then("hosted", after(1.0, default_hosted))
    server = start(step_seconds=0.1, grace=30, settings_env=forwarding_env(fake))
    thread, replies = forward_one(server, fake)
    server.proc.send_signal(signal.SIGTERM)
    wait_not_ready(server)
    thread.join(timeout=30)
    (reply,) = replies
    assert reply.status_code == 200, reply.text
    assert reply.json()["served_by"]["backend"] == "upstream-hosted"
    code, output = server.finish()
    assert code == 0, output
    assert "waiting up to 30 s for 1 job(s) in flight" in output
    assert "drained: every job finished" in output


def test_a_forwarded_job_cut_by_the_grace_end_is_answered_503(start, fake):
    fake.reset()
    fake.then("hosted", hang(20))
    server = start(step_seconds=0.1, grace=0.5, settings_env=forwarding_env(fake))
    thread, replies = forward_one(server, fake)
    server.proc.send_signal(signal.SIGTERM)
    thread.join(timeout=30)
    (reply,) = replies
    assert reply.status_code == 503
    assert reply.json()["state"]["current"] == "failed"
    assert "shut down before the job finished (shutdown grace of 0.5 s)" in reply.json()["error"]
    code, output = server.finish()
    assert code == 0, output
    assert "jobs left at the end of the grace period were cancelled" in output
