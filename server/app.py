"""The FastAPI application: lifespan (engine load → warm-up → serve → close) and routes."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from pipelines.types import Engine
from server.accept import ResponseFormat, negotiate
from server.errors import ApiError, JobFailed, Unauthorized
from server.jobs import JobRecord
from server.logs import job_id_var
from server.openapi import JOB_REQUEST_BODY, JOB_RESPONSES
from server.responses import error_response, success_response
from server.service import JobService
from server.settings import Settings
from server.worker import EngineWorker

log = logging.getLogger(__name__)


def check_token(settings: Settings, authorization: str | None) -> None:
    """Raise Unauthorized unless the bearer token is one of the configured ones."""
    if not settings.tokens:
        return
    scheme, _, token = (authorization or "").partition(" ")
    presented = token.strip().encode()
    # Compare against every token, in constant time, so timing reveals nothing.
    matches = [hmac.compare_digest(presented, t.encode()) for t in settings.tokens]
    if scheme.lower() != "bearer" or not any(matches):
        raise Unauthorized("token is invalid")


def client_gone_watcher(request: Request):
    """A coroutine function that returns once the client has disconnected."""

    async def client_gone() -> None:
        # The body is already read, so the next ASGI message is the disconnect.
        while (await request.receive())["type"] != "http.disconnect":
            pass

    return client_gone


def failed_response(fmt: ResponseFormat | None, exc: ApiError, record: JobRecord) -> Response:
    """Mark `record` failed with `exc`, log it, and render it."""
    record.fail(exc.message)
    level = logging.ERROR if exc.status >= 500 else logging.INFO
    log.log(level, "job failed (%d %s): %s", exc.status, exc.reason, exc.message)
    return error_response(fmt, exc, record.to_json())


def create_app(settings: Settings, engine: Engine) -> FastAPI:
    """Build the application around an engine (real or fake); the lifespan drives it."""
    worker = EngineWorker(engine, settings.queue_size, warmup=settings.warmup)
    service = JobService(settings, worker, demo=engine.info.demo)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Load in the background so /healthz answers (and /readyz says 503) while loading.
        starting = asyncio.create_task(worker.start())
        yield
        service.accepting = False
        await starting
        await worker.stop()

    app = FastAPI(title="FLUX.1 Kontext local /v2/job server", version="0.1.0",
                  lifespan=lifespan)
    app.state.settings, app.state.worker, app.state.service = settings, worker, service

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> JSONResponse:
        """Liveness: 200 while the process can serve, 500 if the engine failed to start."""
        ok = worker.state != "failed"
        return JSONResponse({"ok": ok, "state": worker.state, "error": worker.error},
                            status_code=200 if ok else 500)

    @app.get("/readyz", tags=["operations"])
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

    @app.post("/v2/job", tags=["jobs"], openapi_extra=JOB_REQUEST_BODY,
              responses=JOB_RESPONSES, response_class=Response)
    async def create_job(request: Request, price: bool = False) -> Response:
        """Run a job and answer with its output in the form the Accept header asks for."""
        record = JobRecord(type="unknown")
        token = job_id_var.set(record.id)
        fmt: ResponseFormat | None = None
        try:
            fmt = negotiate(request.headers.get("accept"))
            check_token(settings, request.headers.get("authorization"))
            job = await service.prepare(request, record, price)
            output = await service.execute(job, fmt.image, client_gone_watcher(request))
            log.info("job completed: %s", record.type)
            return success_response(fmt, record.to_json(), output.data, job.headers)
        except ApiError as exc:
            return failed_response(fmt, exc, record)
        except Exception:
            log.exception("unexpected failure")
            return failed_response(fmt, JobFailed("internal server error"), record)
        finally:
            job_id_var.reset(token)

    return app
