"""A real uvicorn server on a loopback port, in a background thread."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import httpx2
import uvicorn
from fastapi import FastAPI

from server.api.deps import server_of
from server.cli.runner import listen_sockets, server_config
from server.composed import Server


@dataclass
class LiveServer:
    """A running server; `url` is e.g. http://127.0.0.1:41234."""

    app: FastAPI
    server: uvicorn.Server
    thread: threading.Thread
    url: str

    @property
    def kontext(self) -> Server:
        """The server object the app was built around (server/wiring.py: Server)."""
        served = server_of(self.app)
        assert served is not None, "not an app built by create_app"
        return served

    @property
    def v2(self) -> str:
        """The base URL the official clients take."""
        return f"{self.url}/v2"

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Block until /readyz answers 200."""
        wait_ready(self.url, timeout)

    def stop(self) -> None:
        """Ask uvicorn to exit (runs the lifespan shutdown) and wait for the thread."""
        self.server.should_exit = True
        self.thread.join(timeout=30)


def wait_ready(url: str, timeout: float = 60.0) -> None:
    """Block until `url`/readyz answers 200."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx2.get(f"{url}/readyz", timeout=5).status_code == 200:
                return
        except httpx2.TransportError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"server at {url} not ready after {timeout}s")


def start_server(app: FastAPI, wait_ready: bool = True, **config) -> LiveServer:
    """Start `app` on 127.0.0.1 with a free port; wait until it is ready unless told not to."""
    # The same edge limits and listeners as `kontext serve` (server_config, listen_sockets:
    # the probe port too when the settings name one); `config` overrides them.
    uvicorn_config = server_config(app, "127.0.0.1", 0, lifespan="on", **config)
    server = uvicorn.Server(uvicorn_config)
    sockets = listen_sockets(app, uvicorn_config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": sockets}, daemon=True,
                              name="live-server")
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    port = sockets[0].getsockname()[1]
    live = LiveServer(app, server, thread, f"http://127.0.0.1:{port}")
    if wait_ready:
        live.wait_ready()
    return live
