"""The FastAPI application: the composition of the jobs path, its lifespan (engine load →
warm-up → serve → drain → close) and the routers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi_offline import FastAPIOffline

from pipelines.types import Engine
from server.api import routes_async, routes_jobs, routes_loras, routes_ops
from server.api.auth import TokenChecker, configured_tokens
from server.api.context import RequestContextMiddleware
from server.api.playground import mount_playground
from server.api.probe_port import ProbePortOnly
from server.api.render import error_response, invalid_params_response
from server.api.shutdown import ShutdownController
from server.api.uploads import UploadBudget
from server.asyncjobs.jobs import AsyncJobs
from server.errors import Unauthorized
from server.jobs.engines import Engines
from server.metrics import Metrics
from server.settings import Settings
from server.wiring import build_jobs_path, local_engines


async def unauthorized_response(request: Request, exc: Unauthorized) -> Response:
    """401 for routes that use require_token as a dependency (plain text, as hosted)."""
    return error_response(None, exc, {})


def create_app(settings: Settings, engine: Engine | list[Engine] | None = None, *,
               engines: Engines | None = None, labels: list[str] | None = None,
               shared_results: bool = False) -> FastAPI:
    """Build the application around local engines (one, or one per device; real or fake,
    `labels` naming their devices) or around `engines` that run elsewhere (Ray Serve).
    The lifespan drives them. `shared_results`: other servers use results_dir too."""
    metrics = Metrics()
    if engines is None:
        if engine is None:
            raise ValueError("create_app needs an engine, a list of engines, or engines=")
        engines = local_engines(settings, engine, metrics, labels)
    path = build_jobs_path(settings, engines, metrics)
    shutdown = ShutdownController(path.service, settings.shutdown_grace_seconds)
    async_jobs = AsyncJobs(path.service, settings, engines, path.engine_lane,
                           recover=not shared_results)
    metrics.watch_queue(lambda: path.waiting)
    metrics.watch_loras(lambda: engines.loras)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Load in the background so /healthz answers (and /readyz says 503) while loading.
        starting = asyncio.create_task(engines.start())
        await async_jobs.start()
        yield
        await shutdown.wait()  # no new jobs; accepted ones finish within the grace period
        await starting
        await engines.stop()
        await async_jobs.stop()
        await path.service.aclose()

    # /docs from the installed package (air-gapped machines reach no CDN); no /redoc: its
    # bundle fetches its logo from a CDN.
    app = FastAPIOffline(title="FLUX.1 Kontext local /v2/job server", version="0.1.0",
                         redoc_url=None, lifespan=lifespan)
    state = app.state
    state.settings, state.jobs, state.metrics, state.shutdown = settings, path, metrics, shutdown
    state.service, state.engines, state.async_jobs = path.service, engines, async_jobs
    state.auth = TokenChecker(configured_tokens(settings), settings.open_probes,
                              frozenset(settings.admin_tokens))
    state.uploads = UploadBudget(settings.max_body_bytes_in_flight, settings.client_share)
    app.include_router(routes_ops.router)
    app.include_router(routes_jobs.router)
    app.include_router(routes_async.router)
    app.include_router(routes_loras.router)
    mount_playground(app)
    state.probe_port = None  # the probe port's number, once the runner has bound it
    app.add_middleware(ProbePortOnly, probe_port=lambda: state.probe_port)
    app.add_middleware(RequestContextMiddleware, metrics=metrics)
    app.add_exception_handler(Unauthorized, unauthorized_response)
    # A bad query parameter is a 400 failed job, like every other validation error.
    app.add_exception_handler(RequestValidationError, invalid_params_response)
    return app
