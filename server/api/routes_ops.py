"""Operations routes: liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, Response

from pipelines.contract import MODEL_FAMILIES
from server.api.deps import ServerDep, require_probe_token

router = APIRouter(tags=["operations"], dependencies=[Depends(require_probe_token)])


@router.get("/healthz")
async def healthz(server: ServerDep) -> JSONResponse:
    """Liveness: 200 while the process can serve; 500 if the engines failed or one hung."""
    ok, body = server.engines.health()
    return JSONResponse(body, status_code=200 if ok else 500)


@router.get("/readyz")
async def readyz(server: ServerDep) -> JSONResponse:
    """Readiness: 503 until the model is loaded and a warm-up edit has run on every device
    (or on `ready_devices` of them); `devices` lists each one's state, `levers` what the
    tier applies and `tier_notes` what it goes without here and why. It also says what
    the content filter and the disclosure marks do (`safety`, `disclosure`), with a
    `warning` when either is off where the licence asks for it."""
    path = server.jobs
    engines_ready, engines = path.engines.readiness()
    info = path.engines.info
    ready = engines_ready and path.service.accepting
    server.metrics.count_readiness(ready)
    state = engines.pop("state")
    body = {
        "ready": ready, "state": state, "error": engines.pop("error"),
        "models": [{"name": part.family, "model": part.model, "state": state,
                    "tier": part.tier, "dtype": part.dtype,
                    "licence": MODEL_FAMILIES[part.family].licence}
                   for part in (info.models or (info,))],
        "model": info.model, "device": info.device, "dtype": info.dtype,
        "tier": info.tier, "levers": info.extra.get("levers"),
        "tier_notes": info.extra.get("notes"), "demo": info.demo,
        "queue": path.queue_status(), **engines,
        **path.safeguards.status(),
    }
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get("/metrics", response_class=Response)
async def metrics_text(server: ServerDep) -> Response:
    """Prometheus metrics: queue, jobs in flight, durations, step time, errors, upstream."""
    body, content_type = server.metrics.render()
    return Response(body, media_type=content_type)
