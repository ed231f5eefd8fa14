"""Settings of serving HTTP: the bind, auth, the queue, body and JSON limits, logs, shutdown."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, Field, field_validator
from pydantic_settings import NoDecode

from pipelines.contract import MAX_INPUT_IMAGES
from server.settings.common import BATCH, MB, Size, split_commas


class ServingSettings(BaseModel):
    """Serving HTTP: the bind, auth, the queue, body and JSON limits, logs, shutdown."""

    host: str = Field("127.0.0.1", description="Address to bind.")
    port: int = Field(8000, ge=0, le=65535, description="Port to bind (0 picks a free one).")
    queue_size: int = Field(
        16, ge=1, description="Jobs that may wait for the GPU; past this, 429 with Retry-After."
    )
    client_share: float = Field(
        0.5, gt=0, le=1,
        description="Fraction of each queue's places (GPU queue, forwarded jobs, unfinished "
        "async jobs) and of --max-body-bytes-in-flight one client may hold: a token, or a "
        "client address on a server without tokens. Past it that client gets 429 (its async "
        "jobs wait without holding up others'); 1 turns the bound off.",
    )
    tokens: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Bearer tokens accepted (comma-separated in the environment). Empty: no "
        "authentication.",
    )
    admin_tokens: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Bearer tokens that may also read, download and cancel every token's "
        "async jobs (comma-separated in the environment); accepted like --tokens. Other "
        "tokens see only the jobs they created.",
    )
    token_file: Path | None = Field(
        None,
        description="File of bearer tokens, one per line (`#` starts a comment); used together "
        "with --tokens.",
    )
    allow_open: bool = Field(
        False,
        description="Allow binding a non-loopback address with no tokens configured (anyone "
        "who can reach the port may run jobs).",
    )
    open_probes: bool = Field(
        True, description="Serve /healthz, /readyz and /metrics without a token."
    )
    max_body_bytes: Size = Field(
        12 * MB, ge=1024, description="Largest request body accepted; larger is 413."
    )
    max_input_bytes: Size = Field(
        10 * MB, ge=1024, description="Largest input image file accepted; larger is 400.", **BATCH
    )
    downscale_inputs: bool = Field(
        False,
        description="Accept input images over 1920 px a side (up to 50 MP, within "
        "--max-input-bytes) and shrink them to 1920 px, keeping their shape, instead of "
        "answering 400 as the hosted API does. Our own clients shrink photos before sending "
        "either way.",
    )
    max_input_parts: int = Field(
        # The official JS client sends each image twice: four images are eight parts.
        2 * MAX_INPUT_IMAGES, ge=1,
        description="Most `input` parts accepted in one multipart request (exact duplicates "
        "count; the official JS client sends each image twice).",
    )
    max_json_bytes: Size = Field(
        64 * 1024, ge=1024, description="Largest job JSON (body or `job` part); larger is 413."
    )
    max_json_depth: int = Field(
        32, ge=2, le=256, description="Deepest nesting accepted in the job JSON; deeper is 400."
    )
    job_timeout_seconds: float = Field(
        600.0, gt=0,
        description="Seconds one local job may run on the engine (queue wait excluded); past "
        "this it is cancelled and answered 504.",
    )
    shutdown_grace_seconds: float = Field(
        60.0, ge=0,
        description="On SIGTERM: seconds queued and running jobs get to finish before they "
        "are cancelled (a second SIGTERM cancels at once).",
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="Log level.", **BATCH
    )
    log_format: Literal["text", "json"] = Field(
        "text", description="Log lines as text, or as one JSON object per line."
    )
    log_prompts: bool = Field(
        False, description="Debugging aid: log job prompts (never logged otherwise)."
    )

    @field_validator("tokens", "admin_tokens", mode="before")
    @classmethod
    def _split_tokens(cls, value: object) -> object:
        # The flag (repeatable) and the environment both split on commas; spaces around a
        # token are dropped; an empty token would let `Authorization: Bearer ` in.
        tokens = split_commas(value)
        if isinstance(tokens, list) and not all(tokens):
            raise ValueError("a token is empty or only spaces; remove it or give a real one")
        for token in tokens if isinstance(tokens, list) else ():
            problem = token_problem(token) if isinstance(token, str) else None
            if problem:
                raise ValueError(problem)
        return tokens


#: Shorter tokens are refused: they can be guessed, and redacting them from the logs would
#: replace ordinary text that happens to contain them.
MIN_TOKEN_CHARS = 16
_VISIBLE_ASCII = re.compile(r"[\x21-\x7e]+")


def token_problem(token: str) -> str | None:
    """Why `token` cannot be a bearer token (too short, or not visible ASCII), or None.

    The message never quotes the token."""
    if not _VISIBLE_ASCII.fullmatch(token):
        return ("a token must be visible ASCII characters, without spaces (what an "
                "Authorization header carries)")
    if len(token) < MIN_TOKEN_CHARS:
        return (f"a token is {len(token)} characters; tokens must be at least "
                f"{MIN_TOKEN_CHARS} characters (make one with `openssl rand -hex 24`)")
    return None
