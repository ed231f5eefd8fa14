"""Reading a /v2/job request into a Submission: a JSON body, or multipart with one `job` part
and `input` parts. The only code that reads a request body."""

from __future__ import annotations

import json
from dataclasses import dataclass

from starlette.requests import ClientDisconnect, Request

from server.errors import (
    ApiError,
    BodyTooLarge,
    ClientGone,
    InvalidRequest,
    UnsupportedMediaType,
)
from server.jobs.prepared import Submission
from server.media.formats import ImageFormat
from server.settings import Settings
from server.wire.base import JobBody, parse_model
from server.wire.json_values import unrepresentable
from server.wire.multipart import MultipartError, TooManyParts, parse_parts

MAX_JSON_DEPTH = 32


@dataclass(frozen=True)
class JsonLimits:
    """Limits on the job JSON (settings max_json_bytes and max_json_depth)."""

    max_bytes: int = 64 * 1024
    max_depth: int = MAX_JSON_DEPTH


@dataclass(frozen=True)
class BodyLimits:
    """How much of a request body is read: bytes, input parts, the job JSON."""

    max_body: int
    max_inputs: int
    json: JsonLimits = JsonLimits()

    @classmethod
    def of(cls, settings: Settings) -> BodyLimits:
        """The limits the settings configure."""
        return cls(settings.max_body_bytes, settings.max_input_parts,
                   JsonLimits(settings.max_json_bytes, settings.max_json_depth))


@dataclass(frozen=True)
class JobSubmission:
    """A parsed request: the job body and its input files, exact duplicates dropped."""

    body: JobBody
    inputs: list[bytes]


def declared_size(request: Request, limit: int) -> int:
    """The body's size as its Content-Length declares it (`limit` when it declares none),
    refused with 413 when over `limit`: checked before any of the body is read."""
    declared = request.headers.get("content-length", "")
    if not declared.isdigit():
        return limit if "transfer-encoding" in request.headers else 0
    if int(declared) > limit:
        raise BodyTooLarge(f"request body is {int(declared)} bytes, over the {limit}-byte limit")
    return int(declared)


def drainable(request: Request, limit: int) -> bool:
    """Whether the unread body is small enough to read and discard after answering."""
    length = request.headers.get("content-length")
    if length is None:
        return "transfer-encoding" not in request.headers  # no body at all
    return length.isdigit() and int(length) <= limit


def closes(request: Request, error: ApiError, body_read: bool, limit: int) -> bool:
    """Whether the answer refusing `request` closes the connection: the one place that
    decides it. A body over the limit is cut off rather than read on to its end. A body
    refused unread is read and discarded if it is small enough (a client still sending
    would see a reset instead of the answer), unless the client waits for
    `100 Continue` before sending it (it never will)."""
    if isinstance(error, BodyTooLarge):
        return True
    if body_read:
        return False
    waiting = "100-continue" in request.headers.get("expect", "").lower()
    return waiting or not drainable(request, limit)


async def read_body(request: Request, limit: int) -> bytes | bytearray:
    """The whole body, refusing with 413 as soon as it is over `limit` bytes.

    A declared body is read into one buffer of its size: growing one chunk by chunk would
    copy it again and again and leave the heap fragmented by every upload's sizes.
    """
    declared = declared_size(request, limit) if "content-length" in request.headers else 0
    body, size = bytearray(declared), 0
    try:
        async for chunk in request.stream():
            if size + len(chunk) > limit:
                raise BodyTooLarge(f"request body is over the {limit}-byte limit")
            if size + len(chunk) <= declared:
                body[size:size + len(chunk)] = chunk
            else:  # undeclared (chunked) bodies grow
                body[size:] = chunk
            size += len(chunk)
    except ClientDisconnect as exc:
        # An aborted upload is the client's doing: a 499 logged at INFO, not a 500 traceback.
        raise ClientGone(f"the client disconnected after sending {size} bytes of the "
                         "request body") from exc
    del body[size:]
    return body


def _depth(value: object, limit: int, level: int = 0) -> int:
    if level > limit:
        return level
    if isinstance(value, dict):
        return max((_depth(v, limit, level + 1) for v in value.values()), default=level + 1)
    if isinstance(value, list):
        return max((_depth(v, limit, level + 1) for v in value), default=level + 1)
    return level


def _refuse_constant(name: str) -> object:
    # Python's json accepts NaN/Infinity, which are not JSON and slip past range checks.
    raise ValueError(f"{name} is not a JSON value")


def parse_job_json(raw: bytes | bytearray, where: str,
                   limits: JsonLimits = JsonLimits()) -> JobBody:
    """Parse and shape-check the job JSON (`where` names the body or the `job` part)."""
    too_deep = f"JSON is nested deeper than {limits.max_depth} levels (max_json_depth)"
    # Parsed before the size check so malformed or deep JSON gets its own message; the body
    # limit already bounds what parsing costs.
    try:
        data = json.loads(raw, parse_constant=_refuse_constant)
    except RecursionError as exc:
        raise InvalidRequest(too_deep, field=where) from exc
    except (UnicodeDecodeError, ValueError) as exc:
        # Python's own wording for over-long integers tells the client to call a Python API.
        reason = "a number has too many digits" if "int_max_str_digits" in str(exc) else exc
        raise InvalidRequest(f"is not valid JSON: {reason}", field=where) from exc
    if len(raw) > limits.max_bytes:
        raise BodyTooLarge(f"job JSON is {len(raw)} bytes, over the {limits.max_bytes}-byte "
                           "limit (max_json_bytes)", field=where)
    if not isinstance(data, dict):
        raise InvalidRequest(
            f"must be a JSON object with `type` and `config`, got {type(data).__name__}",
            field=where,
        )
    if _depth(data, limits.max_depth) > limits.max_depth:
        raise InvalidRequest(too_deep, field=where)
    found = unrepresentable(data)
    if found is not None:  # 1e400, "\ud800": valid JSON, but no answer could echo them
        path, problem = found
        raise InvalidRequest(problem, field=path or where)
    return parse_model(JobBody, data, prefix="")


def _parse_multipart(body: bytes | bytearray, content_type: str, max_inputs: int,
                     limits: JsonLimits) -> JobSubmission:
    try:
        # Room for the JS client, which sends each input twice, and a stray field or two.
        parts = parse_parts(body, content_type, max_parts=2 * (max_inputs + 1))
    except TooManyParts as exc:
        raise InvalidRequest(f"at most {max_inputs} `input` parts (max_input_parts), and one "
                             "`job` part", field="input") from exc
    except MultipartError as exc:
        raise InvalidRequest(f"malformed multipart body: {exc}", field="body") from exc
    jobs = [part for part in parts if part.name == "job"]
    inputs = [part for part in parts if part.name == "input"]
    if len(jobs) != 1:
        raise InvalidRequest(f"expected exactly one `job` part, got {len(jobs)}", field="job")
    if len(inputs) > max_inputs:
        raise InvalidRequest(f"at most {max_inputs} `input` parts (max_input_parts), and one "
                             f"`job` part; got {len(inputs)} `input` parts", field="input")
    job = parse_job_json(jobs[0].data, where="job", limits=limits)
    # Every input is a file, whatever its filename or content type says (or omits): the
    # image decoder sniffs its bytes. Exact repeats are dropped (the JS client sends each
    # File twice).
    files: list[bytes] = []
    for part in inputs:
        if part.data not in files:
            files.append(part.data)
    return JobSubmission(job, files)


async def read_job(request: Request, limits: BodyLimits) -> JobSubmission:
    """Read and parse the request body (typed 4xx errors on failure)."""
    body = await read_body(request, limits.max_body)
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media == "multipart/form-data":
        return _parse_multipart(body, request.headers["content-type"], limits.max_inputs,
                                limits.json)
    if media in ("application/json", ""):
        if not body.strip():
            raise InvalidRequest("request body is empty; send the job as JSON", field="body")
        return JobSubmission(parse_job_json(body, where="body", limits=limits.json), [])
    raise UnsupportedMediaType(
        f"must be application/json or multipart/form-data, got {media!r}", field="Content-Type"
    )


async def read_submission(request: Request, limits: BodyLimits, output_format: ImageFormat,
                          price: bool, owner: str | None = None,
                          client: str | None = None) -> Submission:
    """The request as a Submission the job service takes (`owner`, `client`: who sent it)."""
    parsed = await read_job(request, limits)
    return Submission(parsed.body.type, parsed.body.config, tuple(parsed.inputs),
                      output_format, price, owner=owner, client=client)
