"""CPU per request of uvicorn's HTTP/1.1 protocols and the edge's, without a network: GET
requests fed to one keep-alive connection, a trivial ASGI app answering each. Process CPU
time, so other work on a shared machine matters less than in wall-clock figures."""

from __future__ import annotations

import asyncio
import time

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from server.cli.http_edge import EdgeLimits, EdgeProtocol

REQUEST = b"GET /healthz HTTP/1.1\r\nHost: x\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n"
PROTOCOLS = {"uvicorn httptools (before)": HttpToolsProtocol,
             "uvicorn h11, no additions": H11Protocol,
             "uvicorn h11 + edge (chosen)": EdgeProtocol}


async def _app(scope, receive, send) -> None:
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


class _Transport(asyncio.Transport):
    """Swallows writes; reports a loopback peer."""

    def __init__(self) -> None:
        super().__init__()
        self.closing = False

    def write(self, data) -> None:
        pass

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_extra_info(self, name, default=None):
        return {"sockname": ("127.0.0.1", 1), "peername": ("127.0.0.1", 2)}.get(name, default)


async def _per_request(protocol_class, requests: int) -> float:
    config = uvicorn.Config(_app, log_config=None, access_log=False)
    config.edge_limits = EdgeLimits()
    config.load()
    protocol = protocol_class(config=config, server_state=ServerState(), app_state={})
    protocol.connection_made(_Transport())
    started = time.process_time()
    for _ in range(requests):
        protocol.data_received(REQUEST)
        for _ in range(3):  # the request's task runs and answers
            await asyncio.sleep(0)
    return (time.process_time() - started) / requests


def protocol_cpu(requests: int = 20000, rounds: int = 3) -> dict[str, float]:
    """Median microseconds of CPU per request, for each protocol (rounds interleaved)."""
    seen: dict[str, list[float]] = {name: [] for name in PROTOCOLS}

    async def measure() -> None:
        for _ in range(rounds):
            for name, protocol_class in PROTOCOLS.items():
                seen[name].append(await _per_request(protocol_class, requests))

    asyncio.run(measure())
    return {name: sorted(values)[len(values) // 2] * 1e6 for name, values in seen.items()}
