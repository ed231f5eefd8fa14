"""A multipart/form-data body, already in memory, as its parts: each part's bytes exactly as
sent, whether or not it has a filename or a content type. The one multipart reader, for
job requests (server/api/body.py) and /v2/job answers (wire/answers.py) alike.

Starlette's form parser decodes a part without a filename as text, which corrupts an image
sent that way (`curl -F input=<photo.jpg`, some HTTP libraries and servers);
python-multipart's own streaming parser, driven here, keeps the bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header


class MultipartError(ValueError):
    """The body is not well-formed multipart/form-data (the message says how)."""


class TooManyParts(MultipartError):
    """The body has more parts than the caller allows."""


@dataclass
class Part:
    """One part: its form name, filename and content type (None when absent), its bytes."""

    name: str
    filename: str | None = None
    content_type: str | None = None
    data: bytes = b""
    #: Where its bytes lie in the body, while it is being parsed (copied once at its end).
    pieces: list[memoryview] = field(default_factory=list, repr=False)


class _Collector:
    """python-multipart's callbacks, collecting parts (at most `max_parts`)."""

    def __init__(self, max_parts: int) -> None:
        self.max_parts = max_parts
        self.parts: list[Part] = []
        self.headers: dict[bytes, bytes] = {}
        self.header_field = bytearray()
        self.header_value = bytearray()
        self.finished = False

    def callbacks(self) -> dict:
        return {name: getattr(self, name) for name in (
            "on_part_begin", "on_header_field", "on_header_value", "on_header_end",
            "on_headers_finished", "on_part_data", "on_part_end", "on_end")}

    def on_part_begin(self) -> None:
        if len(self.parts) >= self.max_parts:
            raise TooManyParts(f"more than {self.max_parts} parts")
        self.headers = {}

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self.header_field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self.header_value += data[start:end]

    def on_header_end(self) -> None:
        self.headers[bytes(self.header_field).lower()] = bytes(self.header_value)
        self.header_field, self.header_value = bytearray(), bytearray()

    def on_headers_finished(self) -> None:
        disposition, options = parse_options_header(self.headers.get(b"content-disposition"))
        if disposition != b"form-data" or b"name" not in options:
            raise MultipartError("a part has no Content-Disposition: form-data with a name")
        filename = options.get(b"filename")
        content_type = self.headers.get(b"content-type")
        self.parts.append(Part(
            options[b"name"].decode("utf-8", "replace"),
            filename.decode("utf-8", "replace") if filename is not None else None,
            parse_options_header(content_type)[0].decode("latin-1") if content_type else None))

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        self.parts[-1].pieces.append(memoryview(data)[start:end])

    def on_part_end(self) -> None:
        part = self.parts[-1]
        part.data = b"".join(part.pieces)  # one copy of the part, at its exact size
        part.pieces.clear()

    def on_end(self) -> None:
        self.finished = True


def parse_parts(body: bytes | bytearray, content_type: str, max_parts: int) -> list[Part]:
    """The parts of `body` (sent with `content_type`); MultipartError when malformed or when
    it has more than `max_parts` parts."""
    options = parse_options_header(content_type)[1]
    boundary = options.get(b"boundary")
    if not boundary:
        raise MultipartError("Missing boundary in multipart.")
    collector = _Collector(max_parts)
    try:
        parser = MultipartParser(boundary, collector.callbacks())
        parser.write(body)
        parser.finalize()
    except FormParserError as exc:
        raise MultipartError(str(exc)) from exc
    if not collector.finished:
        raise MultipartError("the body ends before its closing boundary")
    return collector.parts
