"""OpenAPI descriptions of /v2/job's two request forms and its response forms.

The route reads the body itself (to honour the JS client's part order and duplicates), so
FastAPI cannot infer these; they are written out from the job-type table instead, so a new
job type is documented the moment it has a row.
"""

from __future__ import annotations

from typing import Any

from server.jobs.types import JOB_TYPES, JobType
from server.media.formats import MEDIA_TYPES
from server.wire.models import DevKontextConfig


def inline_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` with pydantic's local `#/$defs/...` references replaced by their targets.

    Pydantic puts nested models under `$defs`; embedded in an OpenAPI document those
    references would point at its root, where nothing is.
    """
    defs = schema.get("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                rest = {k: v for k, v in node.items() if k != "$ref"}
                return walk({**defs[ref.removeprefix("#/$defs/")], **rest})
            return {k: walk(v) for k, v in node.items() if k != "$defs"}
        if isinstance(node, list):
            return [walk(item) for item in node]
        return node

    return walk(schema)


def _takes(job_type: JobType) -> str:
    """How many input images a job type takes, for its description."""
    low, high = job_type.min_inputs, job_type.max_inputs
    if high == 0:
        return "no input image; send it as application/json"
    if high == 1:
        return "1 input image, sent as a multipart part named `input`"
    if (job_type.model or "").startswith("klein"):
        return (f"{low} to {high} input images, sent as multipart parts named `input`: every "
                "one a reference, in order (FLUX.2 [klein]; see docs/models.md)")
    return (f"{low} to {high} input images, sent as multipart parts named `input`: the first "
            "is the image to edit, the others are references, in order (our multi-reference "
            "extension; see `reference_method`)")


def _job_variant(job_type: JobType) -> dict[str, Any]:
    config = inline_refs(job_type.config_model.model_json_schema())
    return {
        "type": "object",
        "title": job_type.name,
        "description": f"Takes {_takes(job_type)}.",
        "additionalProperties": False,
        # `config` may be left out only when every config field has a default.
        "required": ["type", "config"] if config.get("required") else ["type"],
        "properties": {"type": {"const": job_type.name}, "config": config},
    }


JOB_SCHEMA: dict[str, Any] = {
    "description": "The job: a supported `type` and that type's `config`.",
    "oneOf": [_job_variant(job_type) for job_type in JOB_TYPES.values()],
}

JOB_REQUEST_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": JOB_SCHEMA},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["job"],
                    "properties": {
                        "job": {**JOB_SCHEMA,
                                "description": "The job as JSON (usually job.json)."},
                        "input": {"type": "array",
                                  "items": {"type": "string", "format": "binary"},
                                  "description": "Input images: PNG, JPEG or WebP, 256–1920 "
                                  "px per side, at most 10 MB each (by default). As many as "
                                  "the job type takes (1–4 on the [dev] type, in order: the "
                                  "image to edit, then references); exact duplicates count "
                                  "once."},
                    },
                },
                "encoding": {"job": {"contentType": "application/json"}},
            },
        },
    },
}

#: The job JSON of the wire contract (contract §3), as every 2xx/4xx/5xx job body has it.
JOB_JSON: dict[str, Any] = {
    "type": "object",
    "required": ["id", "type", "created_at", "updated_at", "expires_at", "state", "config"],
    "properties": {
        "id": {"type": "string"},
        "type": {"type": "string"},
        "created_at": {"type": "string"},
        "updated_at": {"type": "string"},
        "expires_at": {"type": "string"},
        "state": {"type": "object", "required": ["current"], "properties": {
            "current": {"enum": ["queued", "processing", "completed", "failed"]}}},
        "config": {"type": "object"},
        "metrics": {"type": "object"},
        "price": {"type": "object"},
        "error": {"type": "string", "description": "Names the field or limit at fault."},
    },
}
_FAILED_JOB = {**JOB_JSON, "required": [*JOB_JSON["required"], "error"]}

_IMAGE = {"schema": {"type": "string", "format": "binary"}}
_MULTIPART_JOB = {"schema": {"type": "object", "properties": {
    "job": {"type": "string", "format": "binary"},
    "output": {"type": "string", "format": "binary"}}}}
_FAILED_CONTENT = {"application/json": {"schema": _FAILED_JOB},
                   "multipart/form-data": _MULTIPART_JOB}


def _failed(description: str) -> dict[str, Any]:
    return {"description": f"{description} A failed job: JSON, or multipart part `job` "
            "when Accept allows multipart.", "content": _FAILED_CONTENT}


#: Every error answer a job route gives; splice into a route's `responses`.
FAILED_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: _failed("Invalid request, config or input image; or the content filter refused "
                 "the prompt or an input image (docs/safety.md)."),
    401: {"description": "Missing or wrong token (plain text: `token is invalid`).",
          "content": {"text/plain": {"schema": {"type": "string"}}}},
    403: _failed("The content filter (or upstream moderation) refused the generated image; "
                 "no image is returned (docs/safety.md)."),
    406: _failed("No media type in Accept can be produced."),
    413: _failed("The request body is over the size limit."),
    415: _failed("The body is neither JSON nor multipart/form-data."),
    429: {**_failed("The queue is full."),
          "headers": {"Retry-After": {"required": True, "schema": {"type": "integer"},
                                      "description": "Seconds to wait before retrying."}}},
    500: _failed("The job failed while running; the server stays healthy."),
    502: _failed("A forwarded job failed upstream."),
    503: _failed("Not ready yet, or shutting down."),
    504: _failed("A job ran past its time limit, or upstream timed out."),
    # Also keeps FastAPI from documenting a 422 the server never sends (see responses.py).
    "4XX": _failed("Any other client error, e.g. a bad query parameter."),
}

JOB_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The completed job, in the form chosen by Accept.",
        "content": {
            **{media_type: _IMAGE for media_type in MEDIA_TYPES.values()},
            "multipart/form-data": _MULTIPART_JOB,
            "application/json": {"schema": JOB_JSON},
        },
    },
    **FAILED_RESPONSES,
}

#: Schemas of each job type's config, referenced from the docs.
CONFIG_SCHEMAS = {"DevKontextConfig": DevKontextConfig.model_json_schema()}
