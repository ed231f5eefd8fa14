"""What every job-submitting route does around its own step: log context, token, Accept,
and one way of answering a failure."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response

from server.accept import ResponseFormat, negotiate
from server.auth import require_token
from server.errors import ApiError, JobFailed
from server.jobs import JobRecord
from server.logs import job_id_var
from server.responses import error_response

log = logging.getLogger(__name__)

#: A route's own step: given the new record and the negotiated format, the answer.
JobStep = Callable[[JobRecord, ResponseFormat], Awaitable[Response]]


def failed_response(fmt: ResponseFormat | None, exc: ApiError, record: JobRecord) -> Response:
    """Mark `record` failed with `exc`, log it, and render it."""
    record.fail(exc.message)
    level = logging.ERROR if exc.status >= 500 else logging.INFO
    log.log(level, "job failed (%d %s): %s", exc.status, exc.reason, exc.message)
    return error_response(fmt, exc, record.to_json())


async def answer_job(request: Request, step: JobStep) -> Response:
    """Run `step` for a new job record; any ApiError becomes its failed-job answer."""
    record = JobRecord(type="unknown")
    token = job_id_var.set(record.id)
    fmt: ResponseFormat | None = None
    try:
        # The token first: a stranger learns nothing, not even which Accept is valid.
        require_token(request)
        fmt = negotiate(request.headers.get("accept"))
        return await step(record, fmt)
    except ApiError as exc:
        return failed_response(fmt, exc, record)
    except Exception:
        log.exception("unexpected failure")
        return failed_response(fmt, JobFailed("internal server error"), record)
    finally:
        job_id_var.reset(token)
