"""Logging setup: every line carries the job id of the request being handled, if any."""

from __future__ import annotations

import contextvars
import logging

job_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("job_id", default="-")


class _JobIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.job_id = job_id_var.get()
        return True


def configure_logging(level: str = "info") -> None:
    """Log to stderr as `time level [job id] logger: message`."""
    handler = logging.StreamHandler()
    handler.addFilter(_JobIdFilter())
    handler.setFormatter(logging.Formatter(
        "%(asctime)s %(levelname)s [%(job_id)s] %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
