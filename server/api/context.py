"""Per-request context: the request id (X-Request-ID honoured or made, and echoed) and metrics.

A plain ASGI middleware rather than Starlette's BaseHTTPMiddleware, which wraps `receive` and
would hide the client's disconnect from the routes that watch for it.
"""

from __future__ import annotations

import re
import uuid

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.logs import request_id_var
from server.metrics import Metrics, RequestMetrics, current_request

HEADER = "X-Request-ID"
#: What a client-sent id may look like; anything else (log injection, huge ids) is replaced.
_SAFE_ID = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")


def request_id_from(headers: Headers) -> str:
    """The client's X-Request-ID when it is safe to log, else a fresh one."""
    given = headers.get(HEADER, "")
    return given if _SAFE_ID.fullmatch(given) else uuid.uuid4().hex


def route_of(scope: Scope) -> str:
    """The template of the route that served the request (the router notes it in the
    scope), never the raw path: a label per job id would grow without bound."""
    route = scope.get("route")
    return getattr(route, "path", None) or "unmatched"


class RequestContextMiddleware:
    """Sets the request id and metrics scope for the request's code; counts failed answers
    (those a route marked as expected, such as /readyz while starting, are not failures)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_from(Headers(scope=scope))
        state = RequestMetrics(self.metrics)
        status = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)[HEADER] = request_id
            await send(message)

        id_token = request_id_var.set(request_id)
        metrics_token = current_request.set(state)
        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            # Escaped every handler: Starlette's outer middleware answers a plain 500 (or
            # the connection ends mid-answer). Counted here, or an alert on 5xx never fires.
            status, state.expected, state.error_reason = 500, False, "unhandled"
            raise
        finally:
            if status:  # 0: the client left before any answer began
                self.metrics.count_request(route_of(scope), status)
            if status >= 400 and not state.expected:
                self.metrics.count_error(status, state.error_reason or "http")
            current_request.reset(metrics_token)
            request_id_var.reset(id_token)
