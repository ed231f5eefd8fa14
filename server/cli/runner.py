"""Running the app under uvicorn, with graceful shutdown: on SIGTERM stop taking jobs, let
accepted ones finish, then exit 0.

The sequence, driven by `GracefulServer` (uvicorn's Server with its signal handling changed,
and the app's ShutdownController doing the draining):

1. First SIGTERM/SIGINT: readiness goes false and new jobs get 503 (the listener stays open,
   so load balancers and clients see the 503 rather than a refused connection); queued and
   running jobs keep going for up to `shutdown_grace_seconds`.
2. When they are done, or the grace period ends (what is left is cancelled and answered 503
   `shutdown`), uvicorn is told to exit: it closes the listener, waits for the last
   responses to be written, runs the app's lifespan shutdown (engine closed), and the
   process exits 0.
3. A second signal cancels what is left at once; a third exits without waiting.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import signal
import socket
from dataclasses import replace
from types import FrameType
from typing import Any

import uvicorn

from server.api.deps import server_of
from server.cli.http_edge import EdgeLimits, EdgeProtocol, raise_open_file_limit
from server.jobs.shutdown import ShutdownController

log = logging.getLogger(__name__)

#: After the drain, how long uvicorn may take to write the last responses.
RESPONSE_WRITE_SECONDS = 15.0


class GracefulServer(uvicorn.Server):
    """uvicorn's Server, draining jobs on the first signal before it starts shutting down."""

    def __init__(self, config: uvicorn.Config, controller: ShutdownController) -> None:
        super().__init__(config)
        self.controller = controller
        self.signals = 0
        self._loop: asyncio.AbstractEventLoop | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().startup(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # Not calling super(): uvicorn re-raises the captured signal after shutting down,
        # which would end the process "killed by SIGTERM" instead of exiting 0.
        self.signals += 1
        log.info("received %s", signal.Signals(sig).name)
        if self._loop is None or self.signals >= 3:
            self.should_exit = True
            self.force_exit = self.signals >= 3
        elif self.signals == 1:
            # Signal handlers run between bytecodes; hand the work to the loop, waking it.
            self._loop.call_soon_threadsafe(self.controller.begin, self._drained)
        else:
            self._loop.call_soon_threadsafe(self.controller.abort)

    def _drained(self) -> None:
        self.should_exit = True


def server_config(app, host: str, port: int, **overrides: Any) -> uvicorn.Config:
    """uvicorn's config for `app` with the edge's limits from its settings (`kontext serve`
    and the tests' in-process servers alike); `overrides` are uvicorn options."""
    served = server_of(app)
    limits = EdgeLimits.of(served.settings) if served is not None else EdgeLimits()
    fits = raise_open_file_limit(limits.max_connections)
    if fits < limits.max_connections:
        log.warning("the open-file limit fits only %d connections; max_connections lowered "
                    "from %d (raise the hard limit: ulimit -Hn, LimitNOFILE=)", fits,
                    limits.max_connections)
        limits = replace(limits, max_connections=fits)
    # Keep-alive well above common client pool expiries (httpx/httpx2 5 s, node 4 s): with equal
    # timeouts a client can reuse a connection the server is closing at that instant.
    options: dict[str, Any] = {
        "host": host, "port": port, "log_config": None, "http": EdgeProtocol, "ws": "none",
        "timeout_keep_alive": limits.keep_alive,
        "timeout_graceful_shutdown": RESPONSE_WRITE_SECONDS, **overrides}
    config = uvicorn.Config(app, **options)
    config.edge_limits = limits  # read by EdgeProtocol
    config.edge_probe_connections = set()  # the probe port's, counted apart
    return config


def listen_sockets(app, config: uvicorn.Config) -> list[socket.socket]:
    """The main listener, and the probe port's (its settings' `probe_port`, same host) when
    one is configured: its number, as bound, goes to EdgeProtocol and the app (which
    serves only the probes there)."""
    sockets = [config.bind_socket()]
    served = server_of(app)
    if served is not None and served.settings.probe_port is not None:
        probe = copy.copy(config)
        probe.port = served.settings.probe_port
        sockets.append(probe.bind_socket())
        config.edge_probe_port = served.probe_port = sockets[1].getsockname()[1]
        log.info("probes (/healthz, /readyz, /metrics) also on port %d",
                 config.edge_probe_port)
    return sockets


#: glibc's mallopt parameters (malloc.h).
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_ARENA_MAX = -1, -3, -8


def tune_allocator() -> bool:
    """With glibc: return large buffers (request bodies, decoded images) to the system when
    freed, and keep two heap arenas, not one per thread. Without this, glibc raises its
    mmap threshold after the first large free and every decoding thread keeps its own
    arena: a soak of 9 MiB uploads measured RSS climbing to 1.1 GB and staying there,
    against about 300 MB with it (benchmarks/RESULTS.md). True when applied."""
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
        applied = libc.mallopt(M_MMAP_THRESHOLD, 128 * 1024) and \
            libc.mallopt(M_TRIM_THRESHOLD, 1024 * 1024) and \
            libc.mallopt(M_ARENA_MAX, 2)
    except (OSError, AttributeError):
        return False  # not glibc: its allocator is left as it is
    return bool(applied)


def run_app(app, host: str, port: int) -> int:
    """Serve `app` (built by create_app) until a signal drains and stops it; the exit code."""
    if tune_allocator():
        log.info("glibc allocator: mmap threshold 128 KiB, 2 arenas")
    served = server_of(app)
    assert served is not None, "run_app serves an application built by create_app"
    config = server_config(app, host, port)
    server = GracefulServer(config, served.shutdown)
    server.run(sockets=listen_sockets(app, config))  # a port in use: uvicorn exits 3
    return 0 if server.started else 3
