"""Routes of the async variant (wire contract §6), plus progress, events and cancellation.

POST /v2/job/async takes the same request as POST /v2/job. The output image format is
chosen by that request's Accept header, as for a synchronous job (`image/png` →
output.png, `multipart/form-data; image/webp` → output.webp); JSON, `*/*` or no Accept
give output.jpg. The 201 answer is always the job JSON.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from sse_starlette import EventSourceResponse

from server.api.deps import CallerDep, ServerDep
from server.api.openapi import FAILED_RESPONSES, JOB_REQUEST_BODY
from server.api.render import error_response
from server.api.submit import JobIntake
from server.errors import ApiError
from server.jobs.record import refused_record

log = logging.getLogger(__name__)

#: Seconds between keep-alive comments on an idle events stream (proxies drop silent ones).
PING_SECONDS = 15

_MISSING = {404: {"description": "Unknown job, past its expires_at, or another token's."}}

router = APIRouter(prefix="/v2/job/async", tags=["async jobs"])


def _answer(job_id: str, make: Callable[[], Response]) -> Response:
    """`make()`, or the ApiError it raised as a failed job (404 for unknown jobs)."""
    try:
        return make()
    except ApiError as exc:
        return error_response(None, exc, refused_record(job_id, exc.message).to_json())


@router.post("", status_code=201, openapi_extra=JOB_REQUEST_BODY, response_class=Response,
             responses={**FAILED_RESPONSES,
                        201: {"description": "Accepted: the job JSON, with its id."},
                        429: {"description": "The async queue is full; see Retry-After."},
                        507: {"description": "The results folder is at its quota "
                              "(results_max_bytes, results_min_free_bytes)."}})
async def submit(request: Request, server: ServerDep, price: bool = False) -> Response:
    """Accept a job (same request as POST /v2/job) and answer 201 at once."""
    intake = JobIntake(request, server, price)
    try:
        submission = await intake.read(server.async_jobs.reserve)
        body = await server.async_jobs.submit(submission, intake.job_id, intake.reservation)
        log.info("async job accepted: %s", submission.type)
        return JSONResponse(body, status_code=201)
    except Exception as exc:
        return intake.refused(exc)
    finally:
        intake.close()


# Every read is the caller's (its token's): another token's job is 404, as unknown ones.


@router.get("/{job_id}/job.state.current", responses=_MISSING,
            response_class=PlainTextResponse)
async def state(server: ServerDep, caller: CallerDep, job_id: str) -> Response:
    """The job's state as plain text: processing, processed or failed."""
    return _answer(job_id, lambda: PlainTextResponse(
        server.async_jobs.state_text(job_id, caller)))


@router.get("/{job_id}/job.json", responses=_MISSING)
async def job_json(server: ServerDep, caller: CallerDep, job_id: str) -> Response:
    """The job JSON; while unfinished, `state.progress` has step, steps,
    queue_position (jobs ahead; 0 while running) and eta_seconds."""
    jobs = server.async_jobs
    return _answer(job_id, lambda: JSONResponse(jobs.job_json(jobs.find(job_id, caller))))


@router.get("/{job_id}/output", responses=_MISSING)
async def outputs(server: ServerDep, caller: CallerDep, job_id: str) -> Response:
    """The output file names (a JSON list; empty until the job has completed)."""
    return _answer(job_id, lambda: JSONResponse(server.async_jobs.outputs(job_id, caller)))


@router.get("/{job_id}/output/{filename}", responses=_MISSING, response_class=FileResponse)
async def output(server: ServerDep, caller: CallerDep, job_id: str, filename: str
                 ) -> Response:
    """One output file, with its image Content-Type."""

    def file() -> Response:
        path, media_type = server.async_jobs.output_file(job_id, filename, caller)
        return FileResponse(path, media_type=media_type, filename=filename,
                            content_disposition_type="inline")

    return _answer(job_id, file)


@router.get("/{job_id}/events", responses=_MISSING)
async def events(server: ServerDep, caller: CallerDep, job_id: str) -> Response:
    """Server-sent events: `progress` with the job JSON on every change, then one
    `processed` or `failed` event with the final job JSON; then the stream ends."""
    jobs = server.async_jobs

    def stream() -> Response:
        jobs.find(job_id, caller)  # 404 now, not an empty stream
        return EventSourceResponse(jobs.events(job_id, caller), ping=PING_SECONDS)

    return _answer(job_id, stream)


@router.delete("/{job_id}", responses=_MISSING)
async def cancel(server: ServerDep, caller: CallerDep, job_id: str) -> Response:
    """Cancel an unfinished job (it becomes failed, error "cancelled"); answers the
    job JSON. A finished job is left as it is."""
    return _answer(job_id, lambda: JSONResponse(server.async_jobs.cancel(job_id, caller)))
