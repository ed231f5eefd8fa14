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


class RedactFilter(logging.Filter):
    """Replaces every configured secret in the message and traceback with `[redacted]`."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        # Longest first, so a secret containing another is scrubbed whole.
        self.secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        """`text` with every secret replaced."""
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        record.msg, record.args = self.redact(record.getMessage()), ()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        return True


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
    handler.addFilter(RedactFilter(secrets))
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
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
