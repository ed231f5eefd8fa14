"""Bearer tokens, and the rule that an open server binds loopback only.

Tokens come from `--tokens` / KONTEXT_TOKENS, from `--token-file` and from
`--admin-tokens`; any of them is accepted, and says who the caller is: the owner of the
async jobs it creates (a token's fingerprint), and whether it sees every job (admin tokens).
The routes' side (a 401 for a request without one) is server/api/deps.py.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from pathlib import Path

from server.settings import Settings, is_loopback
from server.settings.serving import token_problem


def fingerprint(token: str) -> str:
    """The owner a token's jobs get: 16 hex digits of its SHA-256 (tokens are at least 16
    random characters, so this cannot be turned back into one). Records on disk hold this,
    never a token."""
    return hashlib.sha256(token.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Caller:
    """Who sent a request: the owner its jobs get (None on a server without tokens), and
    whether it sees every job (an admin token; everyone on a server without tokens)."""

    owner: str | None = None
    admin: bool = True

    def may_see(self, owner: str | None) -> bool:
        """Whether a job owned by `owner` exists for this caller (None: a job recorded
        before owners were: only admins see it)."""
        return self.admin or (owner is not None and owner == self.owner)


#: A server without tokens: one anonymous caller who sees everything.
ANYONE = Caller()


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
    and sees every job); says who the caller is."""

    tokens: tuple[str, ...]
    open_probes: bool = True
    admin_tokens: frozenset[str] = frozenset()

    @property
    def enabled(self) -> bool:
        """Whether a token is required at all."""
        return bool(self.tokens)

    def caller(self, authorization: str | None) -> Caller | None:
        """Who sends `Bearer <one of the tokens>` (with no tokens configured, anyone: the
        one caller who sees everything); None for any other header."""
        if not self.tokens:
            return ANYONE
        scheme, _, token = (authorization or "").partition(" ")
        presented = token.strip().encode()
        # Compare against every token, in constant time, so timing reveals nothing.
        matches = [t for t in self.tokens if hmac.compare_digest(presented, t.encode())]
        if scheme.lower() != "bearer" or not matches:
            return None
        return Caller(fingerprint(matches[0]), admin=matches[0] in self.admin_tokens)

    def accepts(self, authorization: str | None) -> bool:
        """Whether the header is `Bearer <one of the tokens>` (always, with no tokens)."""
        return self.caller(authorization) is not None


def open_bind_refusal(settings: Settings, tokens: tuple[str, ...]) -> str | None:
    """Why serving these settings would be unsafe, or None when it is allowed."""
    if tokens or settings.allow_open or is_loopback(settings.host):
        return None
    return (f"refusing to bind {settings.host} with no tokens configured: anyone who can reach "
            "the port could run jobs. Set --tokens / KONTEXT_TOKENS or --token-file, bind "
            "127.0.0.1, or pass --allow-open to run without authentication.")
