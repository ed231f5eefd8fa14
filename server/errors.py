"""The server's error hierarchy: each error knows its HTTP status and the field it is about.

Engine errors (pipelines.errors) carry no status; server/engines/interface.py
(`from_engine_error`) maps them to these, once.
"""

from __future__ import annotations

import logging


class ApiError(Exception):
    """An error answered as a failed job. `field` names what was wrong, when one thing was."""

    status: int = 500
    reason: str = "internal"
    #: How a job refused or failed with this error is logged; None: ERROR for a 5xx (a
    #: fault of the server's), INFO below. Refusals the server means to give, such as
    #: "not ready yet", set their own.
    expected_level: int | None = None

    def __init__(self, message: str, field: str | None = None) -> None:
        self.field = field
        self.message = f"{field}: {message}" if field else message
        super().__init__(self.message)

    @property
    def log_level(self) -> int:
        """The level a log line about this error takes."""
        if self.expected_level is not None:
            return self.expected_level
        return logging.ERROR if self.status >= 500 else logging.INFO

    def headers(self) -> dict[str, str]:
        """Extra response headers for this error."""
        return {}


class InvalidRequest(ApiError):
    """The body is not a well-formed job request (not JSON, missing `job` part, …)."""

    status, reason = 400, "invalid_request"


class ValidationFailed(ApiError):
    """A config field failed validation; the message names the field and the rule."""

    status, reason = 400, "validation"


class UnknownJobType(ApiError):
    """The job type is not one this server serves."""

    status, reason = 400, "unknown_job_type"


class InvalidInputImage(ApiError):
    """An input image is unreadable, of the wrong format, or out of the size limits."""

    status, reason = 400, "invalid_input"


class Unauthorized(ApiError):
    """Missing or wrong bearer token (answered as plain text, as the hosted API does)."""

    status, reason = 401, "unauthorized"


class NotFound(ApiError):
    """The job is unknown or expired."""

    status, reason = 404, "not_found"


class NotAcceptable(ApiError):
    """No media type in Accept is one we can produce."""

    status, reason = 406, "not_acceptable"


class UnsupportedMediaType(ApiError):
    """The body is neither JSON nor multipart/form-data."""

    status, reason = 415, "unsupported_media_type"


class BodyTooLarge(ApiError):
    """The request body is over the configured limit (the answer closes the connection:
    server/api/render.py, `closes`)."""

    status, reason = 413, "body_too_large"


class Overloaded(ApiError):
    """The queue is full; `retry_after` is an honest estimate in whole seconds."""

    status, reason = 429, "queue_full"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = max(1, int(retry_after))

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class UploadsBusy(Overloaded):
    """Request bodies being read already fill max_body_bytes_in_flight."""

    reason = "uploads_busy"


class StorageFull(ApiError):
    """The async results folder is at its size limit or its disk at its free-space reserve,
    or a write to it failed; `retry_after`: when a cleanup may have freed space."""

    status, reason = 507, "storage_full"
    expected_level = logging.WARNING  # a full disk is the operator's to see, not a bug

    def __init__(self, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)} if self.retry_after else {}


class JobFailed(ApiError):
    """The job failed while running; the server is still healthy."""

    status, reason = 500, "job_failed"


class ClientGone(ApiError):
    """The client disconnected and its job was cancelled (nobody reads this answer)."""

    status, reason = 499, "cancelled"


class NotReady(ApiError):
    """The engine is not loaded or warmed up yet, or the server is shutting down."""

    status, reason = 503, "not_ready"
    expected_level = logging.WARNING  # an expected refusal (loading, draining), not a fault


class EngineLost(ApiError):
    """The engine process running the job died; it is restarted, other devices go on."""

    status, reason = 503, "device_lost"


class UpstreamFailed(ApiError):
    """A forwarded job failed upstream (bad answer, 5xx, connection failure)."""

    status, reason = 502, "upstream"


class UpstreamTimeout(ApiError):
    """A forwarded job timed out upstream."""

    status, reason = 504, "upstream_timeout"


class JobTimeout(ApiError):
    """A local job ran past job_timeout_seconds and was cancelled."""

    status, reason = 504, "job_timeout"


class ShuttingDown(ApiError):
    """The server shut down before the job finished; it was cancelled."""

    status, reason = 503, "shutdown"


class UpstreamRejected(ApiError):
    """Upstream refused a forwarded job with a 4xx: answered with the same status."""

    reason = "upstream_rejected"

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class UpstreamModerated(ApiError):
    """Upstream's moderation refused the request: the prompt or the input. 400,
    like a request our own content filter refuses (ContentRefused)."""

    status, reason = 400, "moderated"


class UpstreamOutputModerated(ApiError):
    """Upstream's moderation refused the image it generated (BFL `Content Moderated`). 403,
    like an output our own content filter refuses (OutputRefused)."""

    status, reason = 403, "output_moderated"


def _refusal(categories: tuple[str, ...]) -> str:
    return f"refused by the content filter (category {', '.join(categories)})"


class ContentRefused(ApiError):
    """The content filter (safety block) refused the prompt or an input image: 400, the
    request must change. The message names the checkpoint and the categories, never the
    prompt, the matched pattern or the classifier's scores."""

    status, reason = 400, "content_refused"

    def __init__(self, checkpoint: str, categories: tuple[str, ...]) -> None:
        super().__init__(_refusal(categories), field=checkpoint)
        self.categories = categories


class OutputRefused(ApiError):
    """The content filter (safety block) refused the generated image: 403, its own status
    (the request was acceptable; what it produced is not served). No byte of it is returned
    or stored."""

    status, reason = 403, "output_refused"

    def __init__(self, categories: tuple[str, ...]) -> None:
        super().__init__(_refusal(categories), field="output")
        self.categories = categories
