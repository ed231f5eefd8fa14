"""Rendering answers: a job as the Accept header asked (raw image, multipart job+output, or
JSON), and the one renderer of every failure (sync, async, auth)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from fastapi.exceptions import RequestValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from urllib3.fields import RequestField
from urllib3.filepost import encode_multipart_formdata

from server.api.accept import ResponseFormat, negotiate
from server.errors import ApiError, Unauthorized, ValidationFailed
from server.jobs.record import new_job_id, refused_record
from server.media.formats import MEDIA_TYPES, ImageFormat, file_name
from server.metrics import note_error_reason

if TYPE_CHECKING:
    from server.jobs.job import Job


def _part(name: str, data: bytes, filename: str, content_type: str) -> RequestField:
    field = RequestField(name=name, data=data, filename=filename)
    field.make_multipart(content_type=content_type)
    return field


def multipart_response(job: dict[str, Any], status: int, output: bytes | None = None,
                       image: ImageFormat = "jpeg", headers: dict[str, str] | None = None
                       ) -> Response:
    """A multipart/form-data body with part `job` and, when given, part `output`."""
    parts = [_part("job", json.dumps(job).encode(), "job.json", "application/json")]
    if output is not None:
        parts.append(_part("output", output, file_name(image), MEDIA_TYPES[image]))
    body, content_type = encode_multipart_formdata(parts)
    return Response(body, status_code=status, media_type=content_type, headers=headers)


def job_response(fmt: ResponseFormat, job: Job) -> Response:
    """A finished job's answer: its output as Accept asked, or its failure."""
    if job.error is not None:
        return error_response(fmt, job.error, job.record.to_json())
    assert job.outcome is not None
    return success_response(fmt, job.record.to_json(), job.outcome.output, job.outcome.headers)


def success_response(fmt: ResponseFormat, job: dict[str, Any], output: bytes,
                     headers: dict[str, str] | None = None) -> Response:
    """A completed job in the negotiated form."""
    if fmt.container == "multipart":
        return multipart_response(job, 200, output, fmt.image, headers)
    if fmt.container == "json":
        return JSONResponse(job, headers=headers)
    return Response(output, media_type=MEDIA_TYPES[fmt.image], headers=headers)


def error_response(fmt: ResponseFormat | None, error: ApiError, job: dict[str, Any],
                   close: bool = False) -> Response:
    """A failed job: multipart `job` part when the client accepts multipart, else JSON;
    `close`: the connection closes after it (body.py: `closes` decides).

    401 is plain text containing `token is invalid`, as the hosted API answers.
    """
    headers = error.headers() | ({"Connection": "close"} if close else {})
    note_error_reason(error.reason)  # counted by status and reason in /metrics
    if isinstance(error, Unauthorized):
        return PlainTextResponse("token is invalid", status_code=401, headers=headers)
    if fmt is not None and fmt.allows_multipart:
        return multipart_response(job, error.status, headers=headers)
    return JSONResponse(job, status_code=error.status, headers=headers)


async def invalid_params_response(request: Request, exc: RequestValidationError) -> Response:
    """FastAPI's own query/path validation errors (e.g. `?price=maybe`) as a 400 failed job.

    Without this FastAPI answers 422 with its own body, which the contract does not know.
    """
    first = exc.errors()[0]
    field = ".".join(str(part) for part in first["loc"][1:])  # drop "query"/"path"
    error = ValidationFailed(f"{first['msg'].lower()}, got {first.get('input')!r}", field=field)
    record = refused_record(new_job_id(), error.message)
    try:
        fmt: ResponseFormat | None = negotiate(request.headers.get("accept"))
    except ApiError:
        fmt = None
    return error_response(fmt, error, record.to_json())
