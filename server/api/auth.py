"""Bearer-token authentication, and the rule that an open server binds loopback only.

Tokens come from `--tokens` / KONTEXT_TOKENS and from `--token-file`; any of them is accepted.
Routes call `require_token(request)` (or use it as a FastAPI dependency); probes call
`require_probe_token(request)`, which lets them through when `open_probes` is set.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from pathlib import Path

from starlette.requests import Request

from server.api.body import drainable
from server.errors import Unauthorized
from server.jobs.owners import ANYONE, Caller, fingerprint
from server.settings import Settings, is_loopback
from server.settings.serving import token_problem


class TokenFileError(Exception):
    """The token file cannot be read."""


def read_token_file(path: Path) -> list[str]:
    """Tokens in `path`: one per line, blank lines and `#` comments ignored; at least one."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TokenFileError(f"cannot read the token file {path}: {exc}") from exc
    tokens = []
    for number, line in enumerate(text.splitlines(), start=1):
        token = line.split("#", 1)[0].strip()
        problem = token_problem(token) if token else None
        if problem:
            raise TokenFileError(f"the token file {path}, line {number}: {problem}")
        if token:
            tokens.append(token)
    if not tokens:
        # An empty file is a mistake, not "no authentication": refuse rather than run open.
        raise TokenFileError(f"the token file {path} holds no token (only blank lines or "
                             "comments); put one token per line")
    return tokens


def configured_tokens(settings: Settings) -> tuple[str, ...]:
    """Every accepted token: --tokens, the token file's, then the admin tokens, without
    repeats."""
    tokens = list(settings.tokens)
    if settings.token_file is not None:
        tokens += read_token_file(settings.token_file)
    return tuple(dict.fromkeys([*tokens, *settings.admin_tokens]))


@dataclass(frozen=True)
class TokenChecker:
    """Checks an Authorization header against the configured tokens (none: everyone passes,
    and sees every job); says who the caller is (jobs/owners.py)."""

    tokens: tuple[str, ...]
    open_probes: bool = True
    admin_tokens: frozenset[str] = frozenset()

    @property
    def enabled(self) -> bool:
        """Whether a token is required at all."""
        return bool(self.tokens)

    def check(self, authorization: str | None) -> Caller:
        """The caller, or Unauthorized unless the header is `Bearer <one of the tokens>`."""
        if not self.tokens:
            return ANYONE
        scheme, _, token = (authorization or "").partition(" ")
        presented = token.strip().encode()
        # Compare against every token, in constant time, so timing reveals nothing.
        matches = [t for t in self.tokens if hmac.compare_digest(presented, t.encode())]
        if scheme.lower() != "bearer" or not matches:
            raise Unauthorized("token is invalid")
        return Caller(fingerprint(matches[0]), admin=matches[0] in self.admin_tokens)


def require_token(request: Request) -> Caller:
    """The caller, or Unauthorized unless the request carries a valid token (usable with
    Depends)."""
    checker: TokenChecker = request.app.state.auth
    try:
        return checker.check(request.headers.get("authorization"))
    except Unauthorized as exc:
        exc.close = not drainable(request, request.app.state.settings.max_body_bytes)
        raise


def require_probe_token(request: Request) -> None:
    """For /healthz, /readyz and /metrics: open when `open_probes` is set, else require_token."""
    checker: TokenChecker = request.app.state.auth
    if not checker.open_probes:
        checker.check(request.headers.get("authorization"))


def open_bind_refusal(settings: Settings, tokens: tuple[str, ...]) -> str | None:
    """Why serving these settings would be unsafe, or None when it is allowed."""
    if tokens or settings.allow_open or is_loopback(settings.host):
        return None
    return (f"refusing to bind {settings.host} with no tokens configured: anyone who can reach "
            "the port could run jobs. Set --tokens / KONTEXT_TOKENS or --token-file, bind "
            "127.0.0.1, or pass --allow-open to run without authentication.")
