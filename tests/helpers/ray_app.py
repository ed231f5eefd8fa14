"""The Ray Serve application as the ray_serve tier sees it: its address, and the gate
folder through which tests hold jobs in the engine replicas (helpers.device_engines)."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path

from helpers.live_server import wait_ready

__all__ = ["QUEUE_SIZE", "TOKEN", "RayServer", "free_port", "wait_ready"]

TOKEN = "ray-token-5c2e9f0a17"
#: The engine lane of each ingress: 1 waiting + 2 replicas running.
QUEUE_SIZE = 1


@dataclass
class RayServer:
    """The application's HTTP address and the folder that holds its engines' jobs."""

    url: str
    gate: Path
    results: Path
    #: Where the local Ray node's metrics agent exports (Prometheus text).
    metrics_url: str = ""

    @property
    def v2(self) -> str:
        return f"{self.url}/v2"

    def hold(self) -> None:
        """Jobs that start wait after their first step (see helpers.device_engines)."""
        (self.gate / "hold").write_text("")

    def release(self) -> None:
        (self.gate / "hold").unlink(missing_ok=True)

    def held(self) -> list[str]:
        """`<pid>-<seed>` of each job that was held so far."""
        return sorted(p.name.removeprefix("held-") for p in self.gate.glob("held-*"))

    def forget_held(self) -> None:
        for marker in self.gate.glob("held-*"):
            marker.unlink()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
