"""The HTTP edge: limits the server applies to every connection before any application code
runs. uvicorn's h11 protocol, with what uvicorn has no setting for added here.

- Request line + headers larger than `max_header_bytes`: h11's incomplete-event limit
  refuses them as soon as the buffer passes it; answered 431 (uvicorn would say 400).
- Headers not complete `header_timeout_seconds` after their first byte: 408, closed
  (uvicorn has no header timeout; a connection that sent nothing is closed silently).
- A body arriving slower than `min_body_rate` over a `body_timeout_seconds` window: 408,
  closed. Windows in which the server itself had paused reading do not count.
- More than `max_connections` connections: the new one is answered 503 with Retry-After
  at once and closed (uvicorn's `limit_concurrency` answers only once a request's headers
  are in, so silent connections would still pile up). The probe port (`probe_port`)
  counts its own connections, up to PROBE_MAX_CONNECTIONS: a flood of the main port
  leaves the probes their answers.
"""

from __future__ import annotations

import asyncio
import logging
import resource
from dataclasses import dataclass
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from server.api.deps import server_of
from server.settings import Settings

log = logging.getLogger(__name__)

#: Descriptors kept beside the connections: engine files, logs, results, upstream
#: sockets, the listener, the threads' pipes.
FD_RESERVE = 256
#: How long a refused over-the-cap connection is read (and discarded) before it is closed,
#: so the client reads the 503 rather than a reset.
LINGER_SECONDS = 1.0
#: Connections the probe port holds at once: probes are few, and an orchestrator's own.
PROBE_MAX_CONNECTIONS = 64


@dataclass(frozen=True)
class EdgeLimits:
    """The edge's limits, from the settings of the same names."""

    max_header_bytes: int = 32 * 1024
    header_timeout: float = 10.0
    body_window: float = 10.0
    min_body_rate: int = 8 * 1024
    max_connections: int = 1000
    keep_alive: float = 65.0

    @classmethod
    def of(cls, settings: Settings) -> EdgeLimits:
        """The limits these settings configure."""
        return cls(settings.max_header_bytes, settings.header_timeout_seconds,
                   settings.body_timeout_seconds, settings.min_body_rate,
                   settings.max_connections, settings.keep_alive_seconds)


def canned(status: int, reason: str, text: str, *extra: str) -> bytes:
    """A whole HTTP/1.1 answer that closes the connection (written below h11's state)."""
    body = (text + "\n").encode()
    head = [f"HTTP/1.1 {status} {reason}", "content-type: text/plain; charset=utf-8",
            f"content-length: {len(body)}", "connection: close", *extra]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


class _Connection(h11.Connection):
    """h11's connection, remembering the status its last protocol error suggests."""

    error_status = 400

    def next_event(self) -> Any:
        try:
            return super().next_event()
        except h11.RemoteProtocolError as exc:
            self.error_status = exc.error_status_hint
            raise


class EdgeProtocol(H11Protocol):
    """uvicorn's h11 protocol with the edge's timeouts and connection cap."""

    def __init__(self, config, server_state, app_state, _loop=None) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits: EdgeLimits = getattr(config, "edge_limits", EdgeLimits())
        self.conn = _Connection(h11.SERVER, self.limits.max_header_bytes)
        self._timer: asyncio.TimerHandle | None = None
        self._watching: str | None = None  # "headers" or "body": what the timer watches
        self._window_bytes = 0
        self._refused = False
        #: The probe port's connections, shared by every connection of this server.
        self._probes: set[EdgeProtocol] = getattr(config, "edge_probe_connections", set())
        self._probe_port: int | None = getattr(config, "edge_probe_port", None)
        #: The app's /metrics, which counts the edge's own refusals too (None: no app's).
        served = server_of(config.app)
        self._metrics = served.metrics if served is not None else None

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        sockname = transport.get_extra_info("sockname")
        if self._probe_port is not None and isinstance(sockname, tuple) \
                and sockname[1] == self._probe_port:
            self._probes.add(self)
            over = len(self._probes) > PROBE_MAX_CONNECTIONS
            cap = PROBE_MAX_CONNECTIONS
        else:
            cap = self.limits.max_connections
            over = len(self.connections) - len(self._probes) > cap
        if over:
            self._refuse_over_cap(cap)
            return
        self._watch("headers", self.limits.header_timeout)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # over the cap: read and dropped until the linger ends
        self._window_bytes += len(data)
        super().data_received(data)
        self._follow()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._follow()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        self._probes.discard(self)
        super().connection_lost(exc)

    def _count(self, status: int, reason: str) -> None:
        """Count an answer the edge gave itself in kontext_http_errors_total (and in
        kontext_http_requests_total, route `edge`)."""
        if self._metrics is not None:
            self._metrics.count_request("edge", status)
            self._metrics.count_error(status, reason)

    def send_400_response(self, msg: str) -> None:
        self._count(self.conn.error_status, "edge_header_size" if self.conn.error_status == 431
                    else "edge_malformed")
        if self.conn.error_status == 431:
            log.warning("refused a request whose headers are over %d bytes (max_header_bytes)",
                        self.limits.max_header_bytes)
            self._answer_and_close(canned(
                431, "Request Header Fields Too Large",
                f"request line and headers are over the {self.limits.max_header_bytes}-byte "
                "limit (max_header_bytes)"))
            return
        super().send_400_response(msg)

    # --- what the timer watches follows the request's state ---

    def _follow(self) -> None:
        if self.transport.is_closing():
            return
        state = self.conn.their_state
        if state is h11.IDLE:
            # Between requests uvicorn's keep-alive timer runs; once a byte of the next
            # request is in, its headers are on the clock.
            if self._watching != "headers" and self.conn.trailing_data[0]:
                self._watch("headers", self.limits.header_timeout)
        elif state is h11.SEND_BODY:
            if self._watching != "body":
                self._watch("body", self.limits.body_window)
        elif self._watching is not None:
            self._cancel_timer()

    def _watch(self, what: str, seconds: float) -> None:
        self._cancel_timer()
        self._watching, self._window_bytes = what, 0
        self._timer = self.loop.call_later(seconds, self._timed_out)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer, self._watching = None, None

    def _timed_out(self) -> None:
        watching, self._timer = self._watching, None
        if self.transport.is_closing():
            return
        if watching == "headers":
            self._headers_timed_out()
        elif self.flow.read_paused or self._window_bytes >= \
                self.limits.min_body_rate * self.limits.body_window:
            # Fast enough, or held back by the server itself: watch the next window.
            self._watch("body", self.limits.body_window)
        else:
            log.warning("closed a connection whose body arrived at %.0f bytes/s, under "
                        "min_body_rate", self._window_bytes / self.limits.body_window)
            self._count(408, "edge_body_rate")
            self._answer_and_close(canned(
                408, "Request Timeout", f"the request body arrived slower than "
                f"{self.limits.min_body_rate} bytes/s (min_body_rate)"))

    def _headers_timed_out(self) -> None:
        if not self.conn.trailing_data[0] and self.conn.their_state is h11.IDLE:
            self.transport.close()  # nothing was sent: an idle connection, closed silently
            return
        log.warning("closed a connection that sent no complete headers in %g s "
                    "(header_timeout_seconds)", self.limits.header_timeout)
        self._count(408, "edge_header_timeout")
        self._answer_and_close(canned(
            408, "Request Timeout", f"the request headers took longer than "
            f"{self.limits.header_timeout:g} s (header_timeout_seconds)"))

    def _answer_and_close(self, answer: bytes) -> None:
        """Write `answer` unless a response has begun, and end the connection; the app's
        request (if any) sees a disconnect and its later writes are dropped."""
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            started = cycle.response_started
            cycle.disconnected = True
            cycle.message_event.set()
            if started:
                answer = b""
        elif cycle is not None and self.conn.their_state is not h11.IDLE:
            answer = b""  # answered already; the rest of its body is what timed out
        if answer:
            self.transport.write(answer)
        self.transport.close()

    def _refuse_over_cap(self, cap: int) -> None:
        self._refused = True
        log.warning("refused a connection: %d are open (max_connections)", cap)
        self._count(503, "max_connections")
        self.transport.write(canned(
            503, "Service Unavailable", f"the server holds its maximum of "
            f"{cap} connections (max_connections); retry later",
            "retry-after: 1"))
        self._timer = self.loop.call_later(LINGER_SECONDS, self.transport.close)

    def eof_received(self) -> bool | None:
        if self._refused:
            self.transport.close()
        return None


def raise_open_file_limit(connections: int) -> int:
    """Raise the soft open-file limit to fit `connections` plus FD_RESERVE (never above the
    hard limit, never lowering it); the connections that fit under the limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = connections + FD_RESERVE
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        log.info("raised the open-file limit from %d to %d for %d connections", soft, target,
                 connections)
        soft = target
    fits = connections if soft == resource.RLIM_INFINITY else max(4, soft - FD_RESERVE)
    return min(connections, fits)
