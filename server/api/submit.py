"""What every job-submitting route does around its own step: log context, token, Accept,
reading the body into a Submission, and one way of answering a refusal."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response

from server.api.accept import ResponseFormat, negotiate
from server.api.auth import require_token
from server.api.body import BodyLimits, read_submission
from server.api.render import error_response
from server.errors import ApiError, JobFailed
from server.jobs.record import new_job_id, refused_record
from server.jobs.submission import Submission
from server.jobs.types import JOB_TYPES
from server.logs import job_id_var

log = logging.getLogger(__name__)

#: A route's own step: given the submission, its job id and the negotiated format, the answer.
JobStep = Callable[[Submission, str, ResponseFormat], Awaitable[Response]]


def refused_response(fmt: ResponseFormat | None, exc: ApiError, job_id: str,
                     submission: Submission | None) -> Response:
    """The failed-job answer to a request refused before it became a job.

    It echoes the job type and config as far as they were read.
    """
    level = logging.ERROR if exc.status >= 500 else logging.INFO
    log.log(level, "job refused (%d %s): %s", exc.status, exc.reason, exc.message)
    known = submission is not None and submission.type in JOB_TYPES
    record = refused_record(job_id, exc.message,
                            submission.type if known else None,
                            submission.config if submission is not None else None)
    return error_response(fmt, exc, record.to_json())


async def answer_job(request: Request, price: bool, step: JobStep) -> Response:
    """Read the request into a Submission and run `step`; an ApiError is a refusal."""
    job_id = new_job_id()
    token = job_id_var.set(job_id)
    fmt: ResponseFormat | None = None
    submission: Submission | None = None
    try:
        # The token first: a stranger learns nothing, not even which Accept is valid.
        require_token(request)
        fmt = negotiate(request.headers.get("accept"))
        limits = BodyLimits.of(request.app.state.settings)
        submission = await read_submission(request, limits, fmt.image, price)
        return await step(submission, job_id, fmt)
    except ApiError as exc:
        return refused_response(fmt, exc, job_id, submission)
    except Exception:
        log.exception("unexpected failure")
        return refused_response(fmt, JobFailed("internal server error"), job_id, submission)
    finally:
        job_id_var.reset(token)
