"""Bearer tokens, and the rule that an open server binds loopback only.

Tokens come from `--tokens` / KONTEXT_TOKENS and from `--token-file`; any of them is accepted.
The routes' side (a 401 for a request without one) is server/api/deps.py.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from pathlib import Path

from server.settings import Settings, is_loopback


class TokenFileError(Exception):
    """The token file cannot be read."""


def read_token_file(path: Path) -> list[str]:
    """Tokens in `path`: one per line, blank lines and `#` comments ignored; at least one."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TokenFileError(f"cannot read the token file {path}: {exc}") from exc
    lines = (line.split("#", 1)[0].strip() for line in text.splitlines())
    tokens = [line for line in lines if line]
    if not tokens:
        # An empty file is a mistake, not "no authentication": refuse rather than run open.
        raise TokenFileError(f"the token file {path} holds no token (only blank lines or "
                             "comments); put one token per line")
    return tokens


def configured_tokens(settings: Settings) -> tuple[str, ...]:
    """Every accepted token: --tokens first, then the token file's, without repeats."""
    tokens = list(settings.tokens)
    if settings.token_file is not None:
        tokens += read_token_file(settings.token_file)
    return tuple(dict.fromkeys(tokens))


@dataclass(frozen=True)
class TokenChecker:
    """Checks an Authorization header against the configured tokens (none: everyone passes)."""

    tokens: tuple[str, ...]
    open_probes: bool = True

    @property
    def enabled(self) -> bool:
        """Whether a token is required at all."""
        return bool(self.tokens)

    def accepts(self, authorization: str | None) -> bool:
        """Whether the header is `Bearer <one of the tokens>` (always, with no tokens)."""
        if not self.tokens:
            return True
        scheme, _, token = (authorization or "").partition(" ")
        presented = token.strip().encode()
        # Compare against every token, in constant time, so timing reveals nothing.
        matches = [hmac.compare_digest(presented, t.encode()) for t in self.tokens]
        return scheme.lower() == "bearer" and any(matches)


def open_bind_refusal(settings: Settings, tokens: tuple[str, ...]) -> str | None:
    """Why serving these settings would be unsafe, or None when it is allowed."""
    if tokens or settings.allow_open or is_loopback(settings.host):
        return None
    return (f"refusing to bind {settings.host} with no tokens configured: anyone who can reach "
            "the port could run jobs. Set --tokens / KONTEXT_TOKENS or --token-file, bind "
            "127.0.0.1, or pass --allow-open to run without authentication.")
