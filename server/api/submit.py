"""What every job-submitting route does around its own step: log context, token, Accept,
admission before the body (size, lanes, storage, upload memory), reading the body into a
Submission, and one way of answering a refusal."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response

from server.api.accept import ResponseFormat, for_client, negotiate
from server.api.auth import require_token
from server.api.body import BodyLimits, declared_size, drainable, read_submission
from server.api.render import error_response
from server.errors import ApiError, JobFailed
from server.jobs.admission import Client, Reservation
from server.jobs.owners import Caller
from server.jobs.record import new_job_id, refused_record
from server.jobs.submission import Submission
from server.jobs.types import JOB_TYPES
from server.logs import job_id_var

log = logging.getLogger(__name__)

#: A route's own step: given the submission, its job id, the negotiated format and the
#: place held for it before its body was read, the answer.
JobStep = Callable[[Submission, str, ResponseFormat, Reservation], Awaitable[Response]]
#: Before the body is read: a place held for the client's job, or an ApiError (429, 503,
#: 507).
Reserve = Callable[[Client], Reservation | Awaitable[Reservation]]


def refused_response(fmt: ResponseFormat | None, exc: ApiError, job_id: str,
                     submission: Submission | None) -> Response:
    """The failed-job answer to a request refused before it became a job.

    It echoes the job type and config as far as they were read.
    """
    level = logging.ERROR if exc.status >= 500 and exc.status != 507 else logging.INFO
    log.log(level, "job refused (%d %s): %s", exc.status, exc.reason, exc.message)
    known = submission is not None and submission.type in JOB_TYPES
    record = refused_record(job_id, exc.message,
                            submission.type if known else None,
                            submission.config if submission is not None else None)
    return error_response(fmt, exc, record.to_json())


def client_of(request: Request, caller: Caller) -> Client:
    """Who a request counts against for fairness: its token (its fingerprint), or, on a
    server without tokens, its address as uvicorn reports it (X-Forwarded-For is honoured
    only from the proxies in uvicorn's FORWARDED_ALLOW_IPS, by default loopback)."""
    if caller.owner is not None:
        return caller.owner
    return f"addr:{request.client.host}" if request.client is not None else None


async def admit_and_read(request: Request, fmt: ResponseFormat, price: bool,
                         reserve: Reserve, caller: Caller) -> tuple[Submission, Reservation]:
    """Everything that can refuse a job before its body is read, then the body.

    The declared Content-Length against max_body_bytes (413), room in the lanes (429) or
    the results folder (507) through `reserve`, room among the bodies being read (429).
    Only then is the body read and parsed; the reservation is the caller's to release.
    """
    settings = request.app.state.settings
    limits = BodyLimits.of(settings)
    size = declared_size(request, limits.max_body)
    client = client_of(request, caller)
    reservation = reserve(client)
    if inspect.isawaitable(reservation):
        reservation = await reservation
    try:
        with request.app.state.uploads.hold(size, client):
            submission = await read_submission(request, limits, fmt.image, price,
                                               caller.owner, client)
    except BaseException:
        reservation.release()
        raise
    return submission, reservation


def _keep_open(request: Request) -> bool:
    """After refusing a request with its body unread: whether the connection can go on (the
    server then reads and discards the body). Not when the body is too big to discard, nor
    when the client waits for `100 Continue` before sending it (it never will)."""
    waiting = "100-continue" in request.headers.get("expect", "").lower()
    return not waiting and drainable(request, request.app.state.settings.max_body_bytes)


async def answer_job(request: Request, price: bool, step: JobStep, reserve: Reserve
                     ) -> Response:
    """Read the request into a Submission and run `step`; an ApiError is a refusal."""
    job_id = new_job_id()
    token = job_id_var.set(job_id)
    fmt: ResponseFormat | None = None
    submission: Submission | None = None
    reservation: Reservation | None = None
    try:
        # The token first: a stranger learns nothing, not even which Accept is valid.
        caller = require_token(request)
        fmt = for_client(negotiate(request.headers.get("accept")),
                         request.headers.get("user-agent"))
        submission, reservation = await admit_and_read(request, fmt, price, reserve, caller)
        return await step(submission, job_id, fmt, reservation)
    except ApiError as exc:
        response = refused_response(fmt, exc, job_id, submission)
        if submission is None and not _keep_open(request):
            response.headers["Connection"] = "close"
        return response
    except Exception:
        log.exception("unexpected failure")
        return refused_response(fmt, JobFailed("internal server error"), job_id, submission)
    finally:
        if reservation is not None:
            reservation.release()
        job_id_var.reset(token)
