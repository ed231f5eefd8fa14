"""Who owns a job, and who may see it: a job belongs to the token that submitted it.

A token is known here only by its fingerprint (a hash), which is what job records on disk
hold: the results folder never holds a token.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass


def fingerprint(token: str) -> str:
    """The owner a token's jobs get: 16 hex digits of its SHA-256 (tokens are at least 16
    random characters, so this cannot be turned back into one)."""
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
