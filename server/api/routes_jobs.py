"""POST /v2/job: run a job and answer with its output in the form Accept asks for."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from server.api.accept import ResponseFormat
from server.api.openapi import JOB_REQUEST_BODY, JOB_RESPONSES
from server.api.render import error_response, success_response
from server.api.submit import answer_job
from server.jobs.admission import Reservation
from server.jobs.service import JobService
from server.jobs.submission import Submission

router = APIRouter()


def client_gone_watcher(request: Request):
    """A coroutine function that returns once the client has disconnected."""

    async def client_gone() -> None:
        # The body is already read, so the next ASGI message is the disconnect.
        while (await request.receive())["type"] != "http.disconnect":
            pass

    return client_gone


@router.post("/v2/job", tags=["jobs"], openapi_extra=JOB_REQUEST_BODY, responses=JOB_RESPONSES,
             response_class=Response)
async def create_job(request: Request, price: bool = False) -> Response:
    """Run a job and answer with its output in the form the Accept header asks for."""
    service: JobService = request.app.state.service

    async def run(submission: Submission, job_id: str, fmt: ResponseFormat,
                  reservation: Reservation) -> Response:
        job = await service.submit(submission, job_id, reservation=reservation)
        await service.finish(job, client_gone_watcher(request))
        if job.error is not None:
            return error_response(fmt, job.error, job.record.to_json())
        assert job.outcome is not None
        return success_response(fmt, job.record.to_json(), job.outcome.output,
                                job.outcome.headers)

    return await answer_job(request, price, run, service.reserve)
