"""The FastAPI application around one server (server/wiring.py: Server): its lifespan
(engine load → warm-up → serve → drain → close), its routers, its error handlers."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi_offline import FastAPIOffline

from server.api import routes_async, routes_jobs, routes_loras, routes_ops
from server.api.body import closes
from server.api.context import RequestContextMiddleware
from server.api.deps import attach, current_server
from server.api.playground import mount_playground
from server.api.probe_port import ProbePortOnly
from server.api.render import error_response, invalid_params_response
from server.composed import Server
from server.engines.interface import Engine, Engines
from server.errors import Unauthorized
from server.settings import Settings
from server.wiring import build_server


async def unauthorized_response(request: Request, exc: Unauthorized) -> Response:
    """401 for routes that check the token as a dependency (plain text, as hosted)."""
    limit = current_server(request).settings.max_body_bytes
    return error_response(None, exc, {}, close=closes(request, exc, False, limit))


def create_app(settings: Settings, engine: Engine | list[Engine] | None = None, *,
               engines: Engines | None = None, labels: list[str] | None = None,
               shared_results: bool = False) -> FastAPI:
    """The application of `build_server(settings, ...)` (see there): around local engines
    (given, or None: those the settings ask for) or `engines` that run elsewhere."""
    return application(build_server(settings, engine, engines=engines, labels=labels,
                                    shared_results=shared_results))


def application(server: Server) -> FastAPI:
    """The FastAPI application serving `server`; its lifespan runs the server's."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with server.running():
            yield

    # /docs from the installed package (air-gapped machines reach no CDN); no /redoc: its
    # bundle fetches its logo from a CDN.
    app = FastAPIOffline(title="FLUX.1 Kontext local /v2/job server", version="0.1.0",
                         redoc_url=None, lifespan=lifespan)
    attach(app, server)
    app.include_router(routes_ops.router)
    app.include_router(routes_jobs.router)
    app.include_router(routes_async.router)
    app.include_router(routes_loras.router)
    mount_playground(app)
    app.add_middleware(ProbePortOnly, probe_port=lambda: server.probe_port)
    app.add_middleware(RequestContextMiddleware, metrics=server.metrics)
    app.add_exception_handler(Unauthorized, unauthorized_response)
    # A bad query parameter is a 400 failed job, like every other validation error.
    app.add_exception_handler(RequestValidationError, invalid_params_response)
    return app
