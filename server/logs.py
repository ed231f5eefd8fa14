"""Logging setup: text or JSON lines carrying the job id and request id; secrets redacted.

Prompts and image data are never logged unless `log_prompts` is set (see `job_fields`);
configured tokens and upstream keys are scrubbed from every line as defence in depth.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, TextIO

job_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("job_id", default="-")
request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")

REDACTED = "[redacted]"
TEXT_FORMAT = "%(asctime)s %(levelname)s [%(job_id)s %(request_id)s] %(name)s: %(message)s"
#: LogRecord attributes that are not `extra=` fields.
#: (uvicorn's `color_message` is its message with terminal colour codes: noise in JSON.)
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "job_id",
                                                     "request_id", "taskName", "color_message"}


class ContextFilter(logging.Filter):
    """Stamps each record with the job id and request id of the code that logged it."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.job_id = job_id_var.get()
        record.request_id = request_id_var.get()
        return True


def _written_forms(secret: str) -> set[str]:
    """`secret` as a log line may hold it: as is, escaped by JSON (the JSON format, or a
    client's text echoed in JSON) and by repr() (`%r`)."""
    return {secret, json.dumps(secret)[1:-1], repr(secret)[1:-1]} - {""}


class Redacting(logging.Formatter):
    """Another formatter's lines with every configured secret replaced by `[redacted]`,
    wherever it appears: the message, the traceback, the request id, any extra field.

    Redacting the finished line (not each field) leaves no field out. Secrets are at least
    16 characters (settings), so a replacement never hits ordinary text by chance.
    """

    def __init__(self, inner: logging.Formatter, secrets: Iterable[str]) -> None:
        super().__init__()
        self.inner = inner
        forms = {form for secret in secrets if secret for form in _written_forms(secret)}
        # Longest first, so a secret containing another is scrubbed whole.
        self.forms = sorted(forms, key=len, reverse=True)

    def redact(self, text: str) -> str:
        """`text` with every secret replaced."""
        for form in self.forms:
            text = text.replace(form, REDACTED)
        return text

    def format(self, record: logging.LogRecord) -> str:
        return self.redact(self.inner.format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per line (stdlib json: a dependency for twenty lines is not worth it)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in ("job_id", "request_id"):
            value = getattr(record, key, "-")
            if value != "-":
                line[key] = value
        line.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exception"] = record.exc_text
        return json.dumps(line, default=str)


class StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is when a line is written, not the stream it was when
    logging was set up: a host that swaps sys.stderr afterwards (an embedding application,
    pytest's capture, closed at the end of each test) keeps every line, and no line is
    written to a closed stream."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> TextIO:  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass  # always the current sys.stderr


def make_handler(fmt: str = "text", secrets: Iterable[str] = (),
                 stream: TextIO | None = None) -> logging.Handler:
    """A handler writing `fmt` ("text" or "json") lines to `stream` (default: the current
    sys.stderr, whichever it is when a line is written)."""
    handler = logging.StreamHandler(stream) if stream is not None else StderrHandler()
    handler.addFilter(ContextFilter())
    inner = JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT)
    handler.setFormatter(Redacting(inner, secrets))
    return handler


def configure_logging(level: str = "info", fmt: str = "text",
                      secrets: Iterable[str] = ()) -> None:
    """Send every logger's lines to stderr through one handler (see make_handler)."""
    root = logging.getLogger()
    root.handlers[:] = [make_handler(fmt, secrets)]
    root.setLevel(level.upper())


def job_fields(config: dict[str, Any], job_type: str, log_prompts: bool) -> dict[str, Any]:
    """`extra=` fields describing a job: its type and config, the prompt only if allowed."""
    shown = {k: v for k, v in config.items() if log_prompts or k != "prompt"}
    return {"job_type": job_type, "config": shown}
