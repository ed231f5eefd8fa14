"""POST /v2/job: run a job and answer with its output in the form Accept asks for."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from server.api.deps import ServerDep
from server.api.openapi import JOB_REQUEST_BODY, JOB_RESPONSES
from server.api.render import job_response
from server.api.submit import JobIntake

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
async def create_job(request: Request, server: ServerDep, price: bool = False) -> Response:
    """Run a job and answer with its output in the form the Accept header asks for."""
    intake = JobIntake(request, server, price)
    try:
        submission = await intake.read(server.service.reserve)
        job = await server.service.submit(submission, intake.job_id,
                                          reservation=intake.reservation)
        await server.service.finish(job, client_gone_watcher(request))
        assert intake.format is not None
        return job_response(intake.format, job)
    except Exception as exc:
        return intake.refused(exc)
    finally:
        intake.close()
