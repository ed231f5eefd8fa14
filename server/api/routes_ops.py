"""Operations routes: liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from server.api.auth import require_probe_token

router = APIRouter(tags=["operations"], dependencies=[Depends(require_probe_token)])


@router.get("/healthz")
async def healthz(request: Request) -> JSONResponse:
    """Liveness: 200 while the process can serve; 500 if the engine failed or hung."""
    worker = request.app.state.worker
    ok = worker.state != "failed" and not worker.stuck
    return JSONResponse({"ok": ok, "state": worker.state, "error": worker.error},
                        status_code=200 if ok else 500)


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    """Readiness: 503 until the model is loaded and a warm-up edit has run. It also says
    what the content filter and the disclosure marks do (`safety`, `disclosure`), with a
    `warning` when either is off where the licence asks for it."""
    path = request.app.state.jobs
    worker = path.worker
    info = worker.engine.info
    ready = worker.ready and path.service.accepting
    request.app.state.metrics.count_readiness(ready)
    body = {
        "ready": ready, "state": worker.state, "error": worker.error,
        "model": info.model, "device": info.device, "dtype": info.dtype,
        "tier": info.tier, "demo": info.demo, "queue": path.queue_status(),
        **path.safeguards.status(),
    }
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get("/metrics", response_class=Response)
async def metrics_text(request: Request) -> Response:
    """Prometheus metrics: queue, jobs in flight, durations, step time, errors, upstream."""
    body, content_type = request.app.state.metrics.render()
    return Response(body, media_type=content_type)
