"""The FastAPI application: lifespan (engine load → warm-up → serve → close) and routes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi_offline import FastAPIOffline

from pipelines.types import Engine
from server.accept import ResponseFormat
from server.async_jobs import AsyncJobs
from server.async_routes import async_router
from server.auth import TokenChecker, configured_tokens, require_probe_token
from server.errors import Unauthorized
from server.job_route import answer_job
from server.jobs import JobRecord
from server.logs import job_fields
from server.metrics import Metrics
from server.openapi import JOB_REQUEST_BODY, JOB_RESPONSES
from server.playground import mount_playground
from server.request_context import RequestContextMiddleware
from server.responses import error_response, invalid_params_response, success_response
from server.service import JobService
from server.settings import Settings
from server.shutdown import ShutdownController
from server.worker import EngineWorker

log = logging.getLogger(__name__)


def client_gone_watcher(request: Request):
    """A coroutine function that returns once the client has disconnected."""

    async def client_gone() -> None:
        # The body is already read, so the next ASGI message is the disconnect.
        while (await request.receive())["type"] != "http.disconnect":
            pass

    return client_gone


async def unauthorized_response(request: Request, exc: Unauthorized) -> Response:
    """401 for routes that use require_token as a dependency (plain text, as hosted)."""
    return error_response(None, exc, {})


def create_app(settings: Settings, engine: Engine) -> FastAPI:
    """Build the application around an engine (real or fake); the lifespan drives it."""
    metrics = Metrics()
    worker = EngineWorker(engine, settings.queue_size, warmup=settings.warmup,
                          job_timeout=settings.job_timeout_seconds, metrics=metrics)
    service = JobService(settings, worker, demo=engine.info.demo, metrics=metrics)
    shutdown = ShutdownController(service, worker, settings.shutdown_grace_seconds)
    async_jobs = AsyncJobs(service)  # POST /v2/job/async, results on disk (issue 5)
    metrics.watch_queue(lambda: worker.queued)
    metrics.watch_gpu_memory(engine.info.device)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Load in the background so /healthz answers (and /readyz says 503) while loading.
        starting = asyncio.create_task(worker.start())
        await async_jobs.start()
        yield
        await shutdown.wait()  # no new jobs; accepted ones finish within the grace period
        await starting
        await worker.stop()
        await async_jobs.stop()  # after the worker: its jobs have their answers by now
        await service.aclose()

    # /docs loads Swagger UI from an installed package, not a CDN (air-gapped machines);
    # no /redoc: ReDoc's bundle fetches its logo from a CDN.
    app = FastAPIOffline(title="FLUX.1 Kontext local /v2/job server", version="0.1.0",
                         redoc_url=None, lifespan=lifespan)
    app.state.settings, app.state.worker, app.state.service = settings, worker, service
    app.state.metrics, app.state.shutdown = metrics, shutdown
    app.state.auth = TokenChecker(configured_tokens(settings), settings.open_probes)
    app.include_router(async_router(async_jobs))
    mount_playground(app)
    app.add_middleware(RequestContextMiddleware, metrics=metrics)
    app.add_exception_handler(Unauthorized, unauthorized_response)
    # A bad query parameter is a 400 failed job, like every other validation error.
    app.add_exception_handler(RequestValidationError, invalid_params_response)

    probe = [Depends(require_probe_token)]

    @app.get("/healthz", tags=["operations"], dependencies=probe)
    async def healthz() -> JSONResponse:
        """Liveness: 200 while the process can serve; 500 if the engine failed or hung."""
        ok = worker.state != "failed" and not worker.stuck
        return JSONResponse({"ok": ok, "state": worker.state, "error": worker.error},
                            status_code=200 if ok else 500)

    @app.get("/readyz", tags=["operations"], dependencies=probe)
    async def readyz() -> JSONResponse:
        """Readiness: 503 until the model is loaded and a warm-up edit has run."""
        info = engine.info
        ready = worker.ready and service.accepting
        body = {
            "ready": ready, "state": worker.state, "error": worker.error,
            "model": info.model, "device": info.device, "dtype": info.dtype,
            "tier": info.tier, "demo": info.demo, "queue": service.status(),
        }
        return JSONResponse(body, status_code=200 if ready else 503)

    @app.get("/metrics", tags=["operations"], dependencies=probe, response_class=Response)
    async def metrics_text() -> Response:
        """Prometheus metrics: queue, jobs in flight, durations, step time, errors, upstream."""
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    @app.post("/v2/job", tags=["jobs"], openapi_extra=JOB_REQUEST_BODY,
              responses=JOB_RESPONSES, response_class=Response)
    async def create_job(request: Request, price: bool = False) -> Response:
        """Run a job and answer with its output in the form the Accept header asks for."""

        async def run(record: JobRecord, fmt: ResponseFormat) -> Response:
            job = await service.prepare(request, record, price)
            log.info("job accepted", extra=job_fields(record.config, record.type,
                                                      settings.log_prompts))
            output = await service.execute(job, fmt.image, client_gone_watcher(request))
            log.info("job completed: %s", record.type)
            return success_response(fmt, record.to_json(), output.data, job.headers)

        return await answer_job(request, run)

    return app
