"""The probe port (`probe_port`): a second listener for /healthz, /readyz and /metrics only,
so orchestrator probes answer while the main port is flooded (its connections are counted
apart: server/cli/http_edge.py). Everything else there is 404."""

from __future__ import annotations

from collections.abc import Callable

from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

PROBE_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


class ProbePortOnly:
    """Answers 404 to anything but the probes on the probe port (its number, once bound,
    from `probe_port()`; None when there is none)."""

    def __init__(self, app: ASGIApp, probe_port: Callable[[], int | None]) -> None:
        self.app = app
        self.probe_port = probe_port

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        port = self.probe_port()
        server = scope.get("server")
        if (port is not None and scope["type"] == "http" and server and server[1] == port
                and scope["path"] not in PROBE_PATHS):
            answer = PlainTextResponse("the probe port serves only /healthz, /readyz and "
                                       "/metrics", status_code=404)
            await answer(scope, receive, send)
            return
        await self.app(scope, receive, send)
