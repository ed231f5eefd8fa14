"""Reading /v2/job answers as a client does (forwarding to a hosted API, the batch client).

One reader for the three answer forms (multipart `job` + `output`, a raw image, the job
JSON); multipart parts are read by wire/multipart.py, bytes exactly as sent.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

from server.wire.json_values import unrepresentable
from server.wire.multipart import MultipartError, parse_parts

#: Parts read from one multipart answer; a job answer has two.
MAX_PARTS = 8
#: The longest wait a Retry-After can ask for here: a day (a peer may say `inf`).
MAX_RETRY_AFTER = 86_400.0


@dataclass(frozen=True)
class Answer:
    """What a /v2/job answer held: its job JSON and its output image, when present."""

    job: dict[str, Any] | None
    output: bytes | None


def json_object(raw: bytes | str | None) -> dict[str, Any] | None:
    """`raw` parsed as a JSON object; None when it is empty, not JSON, not an object, or
    holds a value no answer could echo (`1e400`, a lone surrogate)."""
    try:
        value = json.loads(raw) if raw else None
        if not isinstance(value, dict) or unrepresentable(value) is not None:
            return None
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    return value


def media_type(content_type: str | None) -> str:
    """The media type of a Content-Type header, lower case, without parameters."""
    return (content_type or "").split(";")[0].strip().lower()


def multipart_parts(content_type: str, body: bytes) -> dict[str, bytes]:
    """The parts of a multipart body by name (the first of each); {} if it is malformed."""
    try:
        parts = parse_parts(body, content_type, MAX_PARTS)
    except MultipartError:
        return {}
    found: dict[str, bytes] = {}
    for part in parts:
        found.setdefault(part.name, part.data)
    return found


def read_answer(content_type: str | None, body: bytes) -> Answer:
    """The job JSON and output image of an answer, whichever form the server chose."""
    media = media_type(content_type)
    if media == "multipart/form-data":
        parts = multipart_parts(content_type or "", body)
        return Answer(json_object(parts.get("job")), parts.get("output"))
    if media == "application/json":
        return Answer(json_object(body), None)
    if media.startswith("image/"):
        return Answer(None, body)
    return Answer(None, None)


def retry_after_seconds(value: str | None) -> float | None:
    """A Retry-After header (seconds, or an HTTP date) as seconds from 0 to MAX_RETRY_AFTER;
    None if absent or unreadable. Whatever a peer sends (`inf`, `1e400`, a negative number,
    a date in the year 9999) comes out a number that sleeps and headers can take."""
    text = (value or "").strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        seconds = _date_seconds(text)
    if seconds is None or math.isnan(seconds):
        return None
    return min(max(0.0, seconds), MAX_RETRY_AFTER)


def _date_seconds(text: str) -> float | None:
    """Seconds from now until an HTTP date (negative when past); None if not one."""
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError, OverflowError, IndexError):
        return None
    if moment.tzinfo is None:  # HTTP dates are GMT; a zone-less one is not an HTTP date
        return None
    return moment.timestamp() - time.time()
