"""What an edit comes back with, on a server or in-process."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class EditFailed(Exception):
    """The edit was refused or failed; the message is the server's (or says why not)."""


class SetupFailed(Exception):
    """`--local` cannot run: the weights, the content filter or the C2PA credentials cannot
    be set up (exit 2, like `serve` and `batch --local`); the message says why."""


@dataclass(frozen=True)
class Edited:
    """A finished edit: the output image and the final job JSON."""

    output: bytes
    job: dict[str, Any]
