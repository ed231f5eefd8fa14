"""What the edge benchmark does to a server: bounded attacks and loads on loopback, each
returning numbers. Every loop here stops by itself (a count or a deadline)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import select
import socket
import statistics
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx2
import psutil
from PIL import Image

DEV = "inference.flux-fast.dev-kontext.img2img.v1"
CONFIG = {"prompt": "make it green", "width": 512, "height": 512, "steps": 2}
BOUNDARY = "edge-bench"
MIB = 1024 * 1024


def connect(port: int, timeout: float = 30.0) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def status_of(sock: socket.socket, timeout: float) -> int | None:
    """The status of the first answer within `timeout` seconds, else None."""
    sock.settimeout(timeout)
    data = b""
    try:
        while b"\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    parts = data.split(b" ", 2)
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None


def noise_upload(config: dict = CONFIG) -> bytes:
    """A ~9 MiB multipart job: a PNG of noise (incompressible) and the job part."""
    side = 1750
    image = Image.frombytes("RGB", (side, side), os.urandom(side * side * 3))
    buffer = io.BytesIO()
    image.save(buffer, "PNG", compress_level=1)
    job = json.dumps({"type": DEV, "config": config}).encode()
    return (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"input\"; "
            f"filename=\"n.png\"\r\nContent-Type: image/png\r\n\r\n".encode() + buffer.getvalue()
            + f"\r\n--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"job\"\r\n\r\n"
            .encode() + job + f"\r\n--{BOUNDARY}--\r\n".encode())


def upload_head(size: int) -> bytes:
    return (f"POST /v2/job HTTP/1.1\r\nHost: x\r\nAccept: application/json\r\n"
            f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
            f"Content-Length: {size}\r\n\r\n").encode()


class MemoryWatch:
    """Samples the resident memory of a process and its children every 10 ms."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak = self.now()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def now(self) -> int:
        procs = [self.process, *self.process.children(recursive=True)]
        return sum(p.memory_info().rss for p in procs if p.is_running())

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, self.now())

    def __enter__(self) -> MemoryWatch:
        self._thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._stop.set()
        self._thread.join()


def fds(pid: int) -> int:
    """Open descriptors of the process and its children."""
    process = psutil.Process(pid)
    return sum(p.num_fds() for p in [process, *process.children(recursive=True)])


def healthz_rate(port: int, seconds: float = 3.0, clients: int = 8) -> float:
    """GET /healthz per second from `clients` keep-alive clients for `seconds`."""
    counts: list[int] = []
    # Making an httpx2 client is slow (TLS context): every client is made, and connected,
    # before the clock starts.
    http_clients = [httpx2.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)
                    for _ in range(clients)]
    for http in http_clients:
        http.get("/healthz")
    deadline = time.monotonic() + seconds

    def client(http: httpx2.Client) -> None:
        done = 0
        while time.monotonic() < deadline:
            http.get("/healthz")
            done += 1
        counts.append(done)

    threads = [threading.Thread(target=client, args=(http,)) for http in http_clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for http in http_clients:
        http.close()
    return sum(counts) / seconds


def big_header(port: int, size: int = MIB, wait: float = 10.0) -> tuple[int | None, float]:
    """Send a request line and a `size`-byte header never ended: (status, seconds)."""
    started = time.perf_counter()
    with connect(port) as sock:
        with contextlib.suppress(OSError):
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * size)
        status = status_of(sock, wait)
    return status, time.perf_counter() - started


@dataclass
class UnderAttack:
    """/healthz while big-header requests are being sent."""

    healthz_ms: list[float] = field(default_factory=list)
    attack_statuses: Counter = field(default_factory=Counter)
    attack_seconds: float = 0.0
    rss_growth_mib: float = 0.0


def healthz_during_big_headers(port: int, pid: int, senders: int = 4, size: int = 16 * MIB,
                               limit: float = 30.0) -> UnderAttack:
    """`senders` complete requests with a `size`-byte header each, /healthz meanwhile."""
    result, done = UnderAttack(), threading.Event()
    base = MemoryWatch(pid)
    before = base.now()

    def send() -> None:
        with connect(port, timeout=limit) as sock:
            with contextlib.suppress(OSError):
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * size
                             + b"\r\n\r\n")
            result.attack_statuses[status_of(sock, limit)] += 1

    started = time.perf_counter()
    threads = [threading.Thread(target=send) for _ in range(senders)]
    for thread in threads:
        thread.start()
    with base, httpx2.Client(timeout=limit) as http:
        while True:  # at least one probe, however fast the attack is refused
            t0 = time.perf_counter()
            http.get(f"http://127.0.0.1:{port}/healthz")
            result.healthz_ms.append((time.perf_counter() - t0) * 1000)
            if not any(t.is_alive() for t in threads) or \
                    time.perf_counter() - started > limit:
                break
    for thread in threads:
        thread.join()
    done.set()
    result.attack_seconds = time.perf_counter() - started
    result.rss_growth_mib = (base.peak - before) / MIB
    return result


def slowloris(port: int, connections: int = 50, limit: float = 12.0) -> tuple[int, float]:
    """Open `connections` that drip one header byte each 0.2 s; (still open at `limit`,
    seconds until the server had closed them all)."""
    socks = [connect(port) for _ in range(connections)]
    for sock in socks:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    started, open_ = time.perf_counter(), list(socks)
    while open_ and time.perf_counter() - started < limit:
        readable, _, _ = select.select(open_, [], [], 0.2)
        for sock in readable:
            try:
                while sock.recv(65536):
                    pass
            except OSError:
                pass
            open_.remove(sock)
        for sock in list(open_):
            try:
                sock.send(b"a")
            except OSError:
                open_.remove(sock)
    elapsed = time.perf_counter() - started
    for sock in socks:
        sock.close()
    return len(open_), elapsed


def upload_seconds(port: int, body: bytes, runs: int = 3) -> float:
    """Median seconds of a whole 9 MiB job (upload, parse, decode, fake engine, answer)."""
    times = []
    with httpx2.Client(timeout=60) as http:
        for _ in range(runs):
            t0 = time.perf_counter()
            reply = http.post(f"http://127.0.0.1:{port}/v2/job", content=body, headers={
                "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})
            assert reply.status_code == 200, reply.text[:300]
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


@dataclass
class Upload:
    status: int | None
    seconds: float
    sent: int


def one_upload(port: int, body: bytes, chunk: int = 256 * 1024) -> Upload:
    """Headers, then the body in chunks, stopping as soon as an answer is readable."""
    started, sent = time.perf_counter(), 0
    with connect(port, timeout=60) as sock:
        sock.sendall(upload_head(len(body)))
        while sent < len(body):
            if select.select([sock], [], [], 0)[0]:
                break
            try:
                sock.sendall(body[sent:sent + chunk])
            except OSError:
                break
            sent += min(chunk, len(body) - sent)
        status = status_of(sock, 60)
    return Upload(status, time.perf_counter() - started, sent)


def parallel_uploads(port: int, pid: int, body: bytes, count: int) -> tuple[list[Upload], int,
                                                                             int]:
    """`count` uploads at once: their outcomes, server RSS before and at its peak."""
    results: list[Upload] = []
    watch = MemoryWatch(pid)
    before = watch.now()
    with watch:
        threads = [threading.Thread(target=lambda: results.append(one_upload(port, body)))
                   for _ in range(count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    return results, before, watch.peak
