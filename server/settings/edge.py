"""Settings of the HTTP edge: limits applied before any application code runs."""

from __future__ import annotations

from pydantic import BaseModel, Field

from server.settings.common import MB, Size


class EdgeSettings(BaseModel):
    """The HTTP edge: limits applied before any application code runs."""

    max_header_bytes: Size = Field(
        32 * 1024, ge=1024, le=1024 * 1024,
        description="Largest request line plus headers accepted; larger is answered 431 and "
        "the connection closed, before the rest is read.",
    )
    header_timeout_seconds: float = Field(
        10.0, gt=0,
        description="Seconds a client has to send the request line and headers, from its "
        "connection (or, kept alive, from its next request's first byte); past this, 408 and "
        "the connection is closed (one that sent nothing is closed silently).",
    )
    body_timeout_seconds: float = Field(
        10.0, gt=0,
        description="Window over which --min-body-rate is measured while a request body is "
        "read; a window with less is answered 408 and the connection closed.",
    )
    min_body_rate: Size = Field(
        8 * 1024, ge=1,
        description="Bytes per second a request body must arrive at, on average over each "
        "--body-timeout-seconds window (time the server itself is not reading does not count).",
    )
    max_connections: int = Field(
        1000, ge=4,
        description="Connections held open at once; one more is answered 503 with Retry-After "
        "and closed. The open-file limit is raised to fit.",
    )
    probe_port: int | None = Field(
        None, ge=0, le=65535,
        description="A second port, on the same host, that serves only /healthz, /readyz and "
        "/metrics, with connections of its own (at most 64): probes answer while the main "
        "port is at --max-connections. Point Kubernetes probes here and leave it out of the "
        "Service. 0 picks a free port.",
    )
    keep_alive_seconds: float = Field(
        65.0, gt=0,
        description="Seconds an idle keep-alive connection is kept between requests.",
    )
    max_body_bytes_in_flight: Size = Field(
        64 * MB, ge=1024,
        description="Bytes of request bodies being read into memory at once, over all "
        "requests (each counted at its declared Content-Length, or max_body_bytes when "
        "undeclared); a body that does not fit is answered 429 with Retry-After before it is "
        "read.",
    )
