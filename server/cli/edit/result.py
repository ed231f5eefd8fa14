"""What an edit comes back with, on a server or in-process."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class EditFailed(Exception):
    """The edit was refused or failed; the message is the server's (or says why not)."""


@dataclass(frozen=True)
class Edited:
    """A finished edit: the output image and the final job JSON."""

    output: bytes
    job: dict[str, Any]
