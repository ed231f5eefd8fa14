"""Routes of the async variant (wire contract §6), plus progress, events and cancellation.

POST /v2/job/async takes the same request as POST /v2/job. The output image format is
chosen by that request's Accept header, as for a synchronous job (`image/png` →
output.png, `multipart/form-data; image/webp` → output.webp); JSON, `*/*` or no Accept
give output.jpg. The 201 answer is always the job JSON.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from sse_starlette import EventSourceResponse

from server.accept import ResponseFormat
from server.async_jobs import AsyncJobs
from server.auth import require_token
from server.errors import ApiError
from server.job_route import answer_job
from server.jobs import JobRecord
from server.openapi import FAILED_RESPONSES, JOB_REQUEST_BODY
from server.responses import error_response

log = logging.getLogger(__name__)

#: Seconds between keep-alive comments on an idle events stream (proxies drop silent ones).
PING_SECONDS = 15

_MISSING = {404: {"description": "Unknown job, or past its expires_at."}}


def _answer(job_id: str, make: Callable[[], Response]) -> Response:
    """`make()`, or the ApiError it raised rendered as a JSON error (404 for unknown jobs)."""
    try:
        return make()
    except ApiError as exc:
        return error_response(None, exc, {"id": job_id, "error": exc.message})


async def _submit(jobs: AsyncJobs, request: Request, price: bool) -> Response:
    async def accept(record: JobRecord, fmt: ResponseFormat) -> Response:
        job = await jobs.service.prepare(request, record, price)
        body = await jobs.submit(job, fmt.image)
        log.info("async job accepted: %s", record.type)
        return JSONResponse(body, status_code=201)

    return await answer_job(request, accept)


def async_router(jobs: AsyncJobs) -> APIRouter:
    """The /v2/job/async routes, answering from `jobs`."""
    router = APIRouter(prefix="/v2/job/async", tags=["async jobs"])
    authorized = [Depends(require_token)]

    @router.post("", status_code=201, openapi_extra=JOB_REQUEST_BODY, response_class=Response,
                 responses={**FAILED_RESPONSES,
                            201: {"description": "Accepted: the job JSON, with its id."},
                            429: {"description": "The async queue is full; see Retry-After."}})
    async def submit(request: Request, price: bool = False) -> Response:
        """Accept a job (same request as POST /v2/job) and answer 201 at once."""
        return await _submit(jobs, request, price)

    @router.get("/{job_id}/job.state.current", dependencies=authorized, responses=_MISSING,
                response_class=PlainTextResponse)
    async def state(job_id: str) -> Response:
        """The job's state as plain text: processing, processed or failed."""
        return _answer(job_id, lambda: PlainTextResponse(jobs.state_text(job_id)))

    @router.get("/{job_id}/job.json", dependencies=authorized, responses=_MISSING)
    async def job_json(job_id: str) -> Response:
        """The job JSON; while unfinished, `state.progress` has step, steps,
        queue_position (jobs ahead; 0 while running) and eta_seconds."""
        return _answer(job_id, lambda: JSONResponse(jobs.job_json(jobs.find(job_id))))

    @router.get("/{job_id}/output", dependencies=authorized, responses=_MISSING)
    async def outputs(job_id: str) -> Response:
        """The output file names (a JSON list; empty until the job has completed)."""
        return _answer(job_id, lambda: JSONResponse(jobs.outputs(job_id)))

    @router.get("/{job_id}/output/{filename}", dependencies=authorized, responses=_MISSING,
                response_class=FileResponse)
    async def output(job_id: str, filename: str) -> Response:
        """One output file, with its image Content-Type."""

        def file() -> Response:
            path, media_type = jobs.output_file(job_id, filename)
            return FileResponse(path, media_type=media_type, filename=filename,
                                content_disposition_type="inline")

        return _answer(job_id, file)

    @router.get("/{job_id}/events", dependencies=authorized, responses=_MISSING)
    async def events(job_id: str) -> Response:
        """Server-sent events: `progress` with the job JSON on every change, then one
        `processed` or `failed` event with the final job JSON; then the stream ends."""

        def stream() -> Response:
            jobs.find(job_id)  # 404 now, not an empty stream
            return EventSourceResponse(jobs.events(job_id), ping=PING_SECONDS)

        return _answer(job_id, stream)

    @router.delete("/{job_id}", dependencies=authorized, responses=_MISSING)
    async def cancel(job_id: str) -> Response:
        """Cancel an unfinished job (it becomes failed, error "cancelled"); answers the
        job JSON. A finished job is left as it is."""
        return _answer(job_id, lambda: JSONResponse(jobs.cancel(job_id)))

    return router
