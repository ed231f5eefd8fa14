"""The uvicorn and h11 internals that the HTTP edge (server/cli/http_edge.py) and the
graceful runner (server/cli/runner.py) rely on, named one by one: pyproject.toml bounds
uvicorn above because these are not its public API, and an upgrade that moves one of them
fails here, by name, before the edge misbehaves in tests/http/test_edge_limits.py.

Checked on a real H11Protocol fed a real request through a stand-in transport."""

from __future__ import annotations

import asyncio
import inspect

import h11
import pytest
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol, RequestResponseCycle
from uvicorn.server import ServerState

from server.cli.http_edge import EdgeProtocol
from server.cli.runner import GracefulServer

pytestmark = pytest.mark.unit


class _Transport(asyncio.Transport):
    """Enough of a socket transport for uvicorn's connection_made and a response."""

    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.closing = False

    def get_extra_info(self, name, default=None):
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(
            name, default)

    def write(self, data) -> None:
        self.written += data

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...


async def _app(scope, receive, send) -> None:
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


def _parameters(func) -> list[str]:
    return list(inspect.signature(func).parameters)


def test_the_protocol_methods_the_edge_overrides_keep_their_signatures():
    assert _parameters(H11Protocol.__init__) == [
        "self", "config", "server_state", "app_state", "_loop"]
    expected = {"connection_made": ["self", "transport"], "data_received": ["self", "data"],
                "connection_lost": ["self", "exc"], "eof_received": ["self"],
                "on_response_complete": ["self"], "send_400_response": ["self", "msg"]}
    for name, parameters in expected.items():
        assert _parameters(getattr(H11Protocol, name)) == parameters, name
        assert name in vars(EdgeProtocol), f"the edge no longer overrides {name}: update this"


def test_a_request_through_the_protocol_has_the_state_the_edge_reads():
    async def run() -> tuple[H11Protocol, _Transport]:
        config = uvicorn.Config(_app, http=H11Protocol, ws="none", log_config=None)
        protocol = H11Protocol(config, ServerState(), {}, asyncio.get_running_loop())
        transport = _Transport()
        protocol.connection_made(transport)
        # What the edge reads on every connection: the server-wide set it counts, its loop
        # (timers), transport and flow control (was reading paused by the server itself?).
        assert protocol in protocol.connections
        assert isinstance(protocol.loop, asyncio.AbstractEventLoop)
        assert protocol.transport is transport and protocol.flow.read_paused is False
        assert protocol.cycle is None
        # The edge replaces `conn` with its own h11 connection: uvicorn must read it there.
        assert isinstance(protocol.conn, h11.Connection)
        protocol.data_received(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        cycle = protocol.cycle
        assert isinstance(cycle, RequestResponseCycle)
        for name in ("response_complete", "response_started", "disconnected"):
            assert isinstance(getattr(cycle, name), bool), name
        assert isinstance(cycle.message_event, asyncio.Event)
        await asyncio.gather(*protocol.tasks)
        return protocol, transport

    protocol, transport = asyncio.run(run())
    assert transport.written.startswith(b"HTTP/1.1 204 ")
    assert protocol.cycle.response_complete is True


def test_h11_gives_what_the_edge_reads_off_its_connection():
    conn = h11.Connection(h11.SERVER, 64)  # max_incomplete_event_size, positionally
    conn.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * 100)
    with pytest.raises(h11.RemoteProtocolError) as refused:
        conn.next_event()
    assert refused.value.error_status_hint == 431
    idle = h11.Connection(h11.SERVER)
    assert idle.their_state is h11.IDLE and idle.trailing_data == (b"", False)
    assert h11.SEND_BODY is not None


def test_the_server_and_config_the_runner_drives():
    assert _parameters(uvicorn.Server.startup) == ["self", "sockets"]
    # GracefulServer.handle_exit(sig, frame) is installed as the signal handler by uvicorn
    # itself. (Not uvicorn.Server.handle_exit's own signature: sse-starlette replaces
    # it with a (*args, **kwargs) wrapper when imported.)
    assert "signal.signal(sig, self.handle_exit)" in inspect.getsource(
        uvicorn.Server.capture_signals)
    assert _parameters(GracefulServer.handle_exit) == ["self", "sig", "frame"]
    assert "sockets" in _parameters(uvicorn.Server.run)
    server = uvicorn.Server(uvicorn.Config(_app, log_config=None))
    assert (server.should_exit, server.force_exit, server.started) == (False, False, False)
    options = _parameters(uvicorn.Config.__init__)
    for option in ("http", "ws", "timeout_keep_alive", "timeout_graceful_shutdown",
                   "log_config"):
        assert option in options, option
    assert callable(uvicorn.Config.bind_socket)
