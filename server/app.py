"""The FastAPI application: lifespan (engine load → warm-up → serve → close) and routes."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from pipelines.types import Engine, RunControl
from server.accept import ResponseFormat, negotiate
from server.dispatch import DEMO_NOTICE, require_inputs, run_local
from server.errors import ApiError, JobFailed, Unauthorized
from server.images import ImageLimits
from server.job_types import lookup
from server.jobs import JobRecord
from server.logs import job_id_var
from server.openapi import JOB_REQUEST_BODY, JOB_RESPONSES
from server.request_body import read_submission
from server.responses import error_response, success_response
from server.settings import Settings
from server.wire import parse_model
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


def create_app(settings: Settings, engine: Engine) -> FastAPI:
    """Build the application around an engine (real or fake); the lifespan drives it."""
    worker = EngineWorker(engine, settings.queue_size, warmup=settings.warmup)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Load in the background so /healthz answers (and /readyz says 503) while loading.
        starting = asyncio.create_task(worker.start())
        yield
        await starting
        await worker.stop()

    app = FastAPI(title="FLUX.1 Kontext local /v2/job server", version="0.1.0",
                  lifespan=lifespan)
    app.state.settings, app.state.worker = settings, worker
    limits = ImageLimits(max_bytes=settings.max_input_bytes)

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
        body = {
            "ready": worker.ready, "state": worker.state, "error": worker.error,
            "model": info.model, "device": info.device, "dtype": info.dtype,
            "tier": info.tier, "demo": info.demo,
            "queue": {"waiting": worker.queued, "capacity": worker.queue_size,
                      "running": worker.busy},
        }
        return JSONResponse(body, status_code=200 if worker.ready else 503)

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
            output = await _run_job(request, record, fmt, price)
            return success_response(fmt, record.to_json(), output)
        except ApiError as exc:
            return _failed(fmt, exc, record)
        except Exception:
            log.exception("unexpected failure")
            return _failed(fmt, JobFailed("internal server error"), record)
        finally:
            job_id_var.reset(token)

    async def _run_job(request: Request, record: JobRecord, fmt: ResponseFormat,
                       price: bool) -> bytes:
        submission = await read_submission(request, settings.max_body_bytes,
                                           settings.max_input_parts)
        job_type = lookup(submission.body.type)
        record.type = job_type.name
        config = parse_model(job_type.config_model, submission.body.config, "config")
        record.config = config.model_dump(exclude_none=True)
        if price:
            record.price = {"product": job_type.name, "dollars": 0}
        if engine.info.demo:
            record.extra["notice"] = DEMO_NOTICE
        require_inputs(job_type, submission.inputs)

        async def client_gone() -> None:
            while (await request.receive())["type"] != "http.disconnect":
                pass

        output = await run_local(worker, record, config, submission.inputs[0], fmt.image,
                                 RunControl(), limits, settings.jpeg_quality, client_gone)
        log.info("job completed: %s %dx%d, %d steps, %.2fs", record.type, config.width,
                 config.height, config.steps, record.metrics["elapsed"])
        return output.data

    def _failed(fmt: ResponseFormat | None, exc: ApiError, record: JobRecord) -> Response:
        record.fail(exc.message)
        level = logging.ERROR if exc.status >= 500 else logging.INFO
        log.log(level, "job failed (%d %s): %s", exc.status, exc.reason, exc.message)
        return error_response(fmt, exc, record.to_json())

    return app

