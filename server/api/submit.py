"""What every job-submitting route does around its own step, in the order a request meets
it: a job id (it tags every log line), the token, Accept, admission before the body (size,
lanes, storage, upload memory), the body read into a Submission; and one way of answering
a request refused before it became a job."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response

from server.api.accept import ResponseFormat, for_client, negotiate
from server.api.body import BodyLimits, closes, declared_size, read_submission
from server.api.render import error_response
from server.errors import ApiError, JobFailed, Unauthorized
from server.jobs.admission import Client, Reservation
from server.jobs.prepared import Submission
from server.jobs.record import new_job_id, refused_record
from server.jobs.types import JOB_TYPES
from server.logs import job_id_var
from server.settings.tokens import Caller

if TYPE_CHECKING:
    from server.composed import Server

log = logging.getLogger(__name__)

#: Before the body is read: a place held for the client's job, or an ApiError (429, 503,
#: 507).
Reserve = Callable[[Client], Reservation | Awaitable[Reservation]]


def client_of(request: Request, caller: Caller) -> Client:
    """Who a request counts against for fairness: its token (its fingerprint), or, on a
    server without tokens, its address as uvicorn reports it (X-Forwarded-For is honoured
    only from the proxies in uvicorn's FORWARDED_ALLOW_IPS, by default loopback)."""
    if caller.owner is not None:
        return caller.owner
    return f"addr:{request.client.host}" if request.client is not None else None


class JobIntake:
    """One job request on its way in, until it is a job (or refused)."""

    def __init__(self, request: Request, server: Server, price: bool) -> None:
        self.request = request
        self.server = server
        self.price = price
        self.job_id = new_job_id()
        self._log_context = job_id_var.set(self.job_id)
        self.format: ResponseFormat | None = None
        self.submission: Submission | None = None
        self.reservation = Reservation([])

    async def read(self, reserve: Reserve) -> Submission:
        """Everything that can refuse the job before its body is read, then the body.

        The token first (a stranger learns nothing, not even which Accept is valid), then
        Accept (406), the declared Content-Length against max_body_bytes (413), room in the
        lanes (429) or the results folder (507) through `reserve`, room among the bodies
        being read (429); each for the client the token (or address) says it is. Only then
        is the body read and parsed.
        """
        caller = self.server.auth.caller(self.request.headers.get("authorization"))
        if caller is None:
            raise Unauthorized("token is invalid")
        self.format = for_client(negotiate(self.request.headers.get("accept")),
                                 self.request.headers.get("user-agent"))
        limits = BodyLimits.of(self.server.settings)
        size = declared_size(self.request, limits.max_body)
        client = client_of(self.request, caller)
        reservation = reserve(client)
        self.reservation = await reservation if inspect.isawaitable(reservation) \
            else reservation
        with self.server.uploads.hold(size, client):
            self.submission = await read_submission(self.request, limits, self.format.image,
                                                    self.price, caller.owner, client)
        return self.submission

    def refused(self, exc: Exception) -> Response:
        """The failed-job answer to a request refused before it became a job (an
        unexpected exception is a 500). It echoes the job type and config as far as they
        were read."""
        if not isinstance(exc, ApiError):
            log.exception("unexpected failure")
            exc = JobFailed("internal server error")
        log.log(exc.log_level, "job refused (%d %s): %s", exc.status, exc.reason, exc.message)
        sent = self.submission
        known = sent is not None and sent.type in JOB_TYPES
        record = refused_record(self.job_id, exc.message, sent.type if known else None,
                                sent.config if sent is not None else None)
        close = closes(self.request, exc, sent is not None, self.server.settings.max_body_bytes)
        return error_response(self.format, exc, record.to_json(), close=close)

    def close(self) -> None:
        """Give back what the request held (its place, if it never became a job's)."""
        self.reservation.release()
        job_id_var.reset(self._log_context)
