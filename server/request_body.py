"""Reading a /v2/job request: a JSON body, or multipart with one `job` part and `input` parts."""

from __future__ import annotations

import json
from dataclasses import dataclass

from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException
from starlette.requests import Request

from server.errors import BodyTooLarge, InvalidRequest, UnsupportedMediaType
from server.wire import JobBody, parse_model

MAX_JSON_DEPTH = 32


@dataclass(frozen=True)
class JobSubmission:
    """A parsed request: the job body and its input files, exact duplicates dropped."""

    body: JobBody
    inputs: list[bytes]


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refusing with 413 as soon as it is over `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(f"request body is {int(declared)} bytes, over the {limit}-byte limit")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"request body is over the {limit}-byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


def _depth(value: object, level: int = 0) -> int:
    if level > MAX_JSON_DEPTH:
        return level
    if isinstance(value, dict):
        return max((_depth(v, level + 1) for v in value.values()), default=level + 1)
    if isinstance(value, list):
        return max((_depth(v, level + 1) for v in value), default=level + 1)
    return level


def parse_job_json(raw: bytes, where: str) -> JobBody:
    """Parse and shape-check the job JSON (`where` names the body or the `job` part)."""
    try:
        data = json.loads(raw)
    except RecursionError as exc:
        raise InvalidRequest(f"JSON is nested deeper than {MAX_JSON_DEPTH} levels",
                             field=where) from exc
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidRequest(f"is not valid JSON: {exc}", field=where) from exc
    if not isinstance(data, dict):
        raise InvalidRequest(
            f"must be a JSON object with `type` and `config`, got {type(data).__name__}",
            field=where,
        )
    if _depth(data) > MAX_JSON_DEPTH:
        raise InvalidRequest(f"JSON is nested deeper than {MAX_JSON_DEPTH} levels", field=where)
    return parse_model(JobBody, data, prefix="")


async def _part_bytes(part: UploadFile | str) -> bytes:
    return await part.read() if isinstance(part, UploadFile) else part.encode()


def _replay(body: bytes):
    """An ASGI receive that hands Starlette's form parser the body already read."""
    sent = False

    async def receive() -> dict:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


async def _parse_multipart(request: Request, body: bytes, max_inputs: int) -> JobSubmission:
    replay = Request(request.scope, _replay(body))
    try:
        form = await replay.form(max_files=max_inputs + 1, max_fields=max_inputs + 1,
                                 max_part_size=len(body) + 1)
    except MultiPartException as exc:
        raise InvalidRequest(f"malformed multipart body: {exc.message}", field="body") from exc
    try:
        jobs, inputs = form.getlist("job"), form.getlist("input")
        if len(jobs) != 1:
            raise InvalidRequest(f"expected exactly one `job` part, got {len(jobs)}", field="job")
        if len(inputs) > max_inputs:
            raise InvalidRequest(f"at most {max_inputs} `input` parts, got {len(inputs)}",
                                 field="input")
        job = parse_job_json(await _part_bytes(jobs[0]), where="job")
        files: list[bytes] = []
        for part in inputs:
            data = await _part_bytes(part)
            if data not in files:  # the JS client sends each File twice
                files.append(data)
        return JobSubmission(job, files)
    finally:
        await form.close()


async def read_submission(request: Request, max_body: int, max_inputs: int) -> JobSubmission:
    """Read and parse the request body into a JobSubmission (typed 4xx errors on failure)."""
    body = await read_body(request, max_body)
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media == "multipart/form-data":
        return await _parse_multipart(request, body, max_inputs)
    if media in ("application/json", ""):
        if not body.strip():
            raise InvalidRequest("request body is empty; send the job as JSON", field="body")
        return JobSubmission(parse_job_json(body, where="body"), [])
    raise UnsupportedMediaType(
        f"must be application/json or multipart/form-data, got {media!r}", field="Content-Type"
    )

