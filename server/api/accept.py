"""Accept-header negotiation, including the hosted API's non-standard second media type.

The official clients send e.g. `multipart/form-data; image/png`: a second media type
after the `;`, not a `k=v` parameter. No HTTP library parses that, hence this module.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from server.errors import NotAcceptable
from server.media.formats import FORMAT_OF_MEDIA_TYPE as IMAGE_TYPES
from server.media.formats import ImageFormat

Container = Literal["raw", "multipart", "json"]
MAX_ACCEPT_LENGTH = 4096


@dataclass(frozen=True)
class ResponseFormat:
    """How to answer: the container, the image format inside it, and whether a failure
    must be JSON even though the client asked for multipart (`json_errors`)."""

    container: Container = "raw"
    image: ImageFormat = "jpeg"
    json_errors: bool = False

    @property
    def allows_multipart(self) -> bool:
        """Whether errors may be answered as multipart (the client asked for multipart)."""
        return self.container == "multipart" and not self.json_errors


DEFAULT = ResponseFormat()

#: User-Agent marks of clients that read a failure's reason only from a JSON body. The AI
#: SDK's provider (`@ai-sdk/prodia`) asks for multipart but parses errors with a JSON
#: handler (`error`, `message` or `detail` becomes the message it throws); a multipart
#: failure leaves its users with the bare status text ("Service Unavailable"). Its requests
#: carry the SDK's HTTP helper's mark (`ai/7.0.173 ai-sdk/provider-utils/4.0.45 ...`), and
#: the provider's own where its headers survive.
JSON_ERROR_CLIENTS = ("ai-sdk/provider-utils/", "ai-sdk/prodia/")


def for_client(fmt: ResponseFormat, user_agent: str | None) -> ResponseFormat:
    """`fmt`, with failures as JSON for a client that reads no other kind."""
    if fmt.container == "multipart" and any(mark in (user_agent or "")
                                            for mark in JSON_ERROR_CLIENTS):
        return replace(fmt, json_errors=True)
    return fmt


def _parse_range(text: str) -> tuple[str, float, ImageFormat | None]:
    """One comma-separated range → (media type, q, image type named after a `;`)."""
    tokens = [token.strip().lower() for token in text.split(";")]
    media, q, second = tokens[0], 1.0, None
    for token in tokens[1:]:
        if "=" in token:
            key, _, value = token.partition("=")
            if key.strip() == "q":
                try:
                    q = float(value.strip())
                except ValueError:
                    q = 1.0
        elif token in IMAGE_TYPES and second is None:
            second = IMAGE_TYPES[token]
    return media, q, second


def _format_for(media: str, second: ImageFormat | None) -> ResponseFormat | None:
    if media in IMAGE_TYPES:
        return ResponseFormat("raw", IMAGE_TYPES[media])
    if media == "multipart/form-data":
        return ResponseFormat("multipart", second or "jpeg")
    if media == "application/json":
        return ResponseFormat("json")
    if media in ("*/*", "image/*", "multipart/*"):
        return ResponseFormat("multipart") if media == "multipart/*" else DEFAULT
    return None


def negotiate(accept: str | None) -> ResponseFormat:
    """Pick the response format for an Accept header; raise NotAcceptable if none fits."""
    if not accept or not accept.strip():
        return DEFAULT
    if len(accept) > MAX_ACCEPT_LENGTH:
        raise NotAcceptable(f"is longer than {MAX_ACCEPT_LENGTH} characters", field="Accept")
    ranges = [_parse_range(part) for part in accept.split(",") if part.strip()]
    # Stable sort: among equal q, the client's order wins.
    for media, q, second in sorted(ranges, key=lambda r: -r[1]):
        if q <= 0:
            continue
        chosen = _format_for(media, second)
        if chosen is not None:
            return chosen
    # Quote at most 100 characters: a 4 KB header echoed back helps nobody.
    shown = accept if len(accept) <= 100 else accept[:97] + "..."
    raise NotAcceptable(
        f"none of {shown!r} can be produced; use image/jpeg, image/png, image/webp, "
        "multipart/form-data or application/json",
        field="Accept",
    )
