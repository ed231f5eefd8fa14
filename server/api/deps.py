"""How routes reach the server: the one server object (server/composed.py: Server) as a
FastAPI dependency, and the token checks built on it. The only code that touches the
application's state."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, FastAPI
from starlette.requests import Request

from server.composed import Server
from server.errors import Unauthorized
from server.settings.tokens import Caller


def attach(app: FastAPI, server: Server) -> None:
    """Make `server` the one its routes reach."""
    app.state.server = server


def server_of(app) -> Server | None:
    """The server an application was built around (None: another ASGI app)."""
    return getattr(getattr(app, "state", None), "server", None)


def current_server(request: Request) -> Server:
    """The request's server (a FastAPI dependency)."""
    return request.app.state.server


#: A route parameter `server: ServerDep` is the server.
ServerDep = Annotated[Server, Depends(current_server)]


def require_token(request: Request, server: ServerDep) -> Caller:
    """Who sends the request, or Unauthorized (401) unless it carries a valid token (a
    route dependency; job submissions check it first thing in server/api/submit.py)."""
    caller = server.auth.caller(request.headers.get("authorization"))
    if caller is None:
        raise Unauthorized("token is invalid")
    return caller


#: A route parameter `caller: CallerDep` is who sent the request (its token).
CallerDep = Annotated[Caller, Depends(require_token)]


def require_probe_token(request: Request, server: ServerDep) -> None:
    """For /healthz, /readyz and /metrics: open when `open_probes` is set, else the token."""
    if not server.auth.open_probes:
        require_token(request, server)
