"""OpenAPI descriptions of /v2/job's two request forms and its response forms.

The route reads the body itself (to honour the JS client's part order and duplicates), so
FastAPI cannot infer these; they are written out from the wire models instead.
"""

from __future__ import annotations

from typing import Any

from server.wire import DevKontextConfig, JobBody

_JOB_SCHEMA: dict[str, Any] = {
    **JobBody.model_json_schema(),
    "description": "The job. `config` depends on `type`; for the dev-kontext type it is "
    "DevKontextConfig.",
}

JOB_REQUEST_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": _JOB_SCHEMA},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["job"],
                    "properties": {
                        "job": {"type": "string", "format": "binary",
                                "description": "The job as JSON (usually job.json)."},
                        "input": {"type": "array",
                                  "items": {"type": "string", "format": "binary"},
                                  "description": "Input images (PNG, JPEG or WebP)."},
                    },
                },
                "encoding": {"job": {"contentType": "application/json"}},
            },
        },
    },
}

_IMAGE = {"schema": {"type": "string", "format": "binary"}}
_FAILED = {"description": "A failed job (JSON, or multipart part `job` when Accept allows)."}

JOB_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The completed job, in the form chosen by Accept.",
        "content": {
            "image/jpeg": _IMAGE, "image/png": _IMAGE, "image/webp": _IMAGE,
            "multipart/form-data": {"schema": {"type": "object", "properties": {
                "job": {"type": "string", "format": "binary"},
                "output": {"type": "string", "format": "binary"}}}},
            "application/json": {"schema": {"type": "object"}},
        },
    },
    400: _FAILED,
    401: {"description": "Missing or wrong token (plain text: `token is invalid`).",
          "content": {"text/plain": {"schema": {"type": "string"}}}},
    406: _FAILED, 413: _FAILED, 415: _FAILED,
    429: {"description": "Queue full; see the Retry-After header."},
    500: _FAILED, 502: _FAILED, 503: _FAILED, 504: _FAILED,
}

#: Schemas of each job type's config, referenced from the docs.
CONFIG_SCHEMAS = {"DevKontextConfig": DevKontextConfig.model_json_schema()}
