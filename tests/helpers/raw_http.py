"""HTTP/1.1 over a bare socket, for tests that must see what an ordinary client hides: an
answer that arrives before the request was complete, a connection the server closed."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass
class RawAnswer:
    """A response read off the socket: status, lower-case headers, body, whether the
    server closed the connection after it."""

    status: int
    headers: dict[str, str]
    body: bytes
    closed: bool


def connect(url: str, timeout: float = 30.0) -> socket.socket:
    """A TCP connection to the server at `url` (http://host:port)."""
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def send_quietly(sock: socket.socket, data: bytes) -> bool:
    """Send `data`; False when the server has closed (reset) the connection meanwhile."""
    try:
        sock.sendall(data)
    except OSError:
        return False
    return True


def read_answer(sock: socket.socket, until_closed: bool = False) -> RawAnswer:
    """One response (its status line, headers and Content-Length body; an interim
    `100 Continue` is one too), then whether the server closed the connection; with
    `until_closed`, wait for that close."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = _recv(sock)
        if not chunk:
            raise ConnectionError(f"closed without an answer (got {data[:200]!r})")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:] if ": " in line)
    length = int(headers.get("content-length", "0"))
    closed = False
    while len(body) < length:
        chunk = _recv(sock)
        if not chunk:
            closed = True
            break
        body += chunk
    if until_closed and not closed:
        closed = _recv(sock) == b""
    return RawAnswer(int(lines[0].split()[1]), headers, body, closed)


def _recv(sock: socket.socket) -> bytes:
    try:
        return sock.recv(65536)
    except ConnectionResetError:
        return b""
