"""What one rank of a context-parallel group is (torch-free: the server builds it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Mode = Literal["ulysses", "ring"]
MODES: tuple[Mode, ...] = ("ulysses", "ring")
#: How long a rank waits in a collective for the others before it gives up: a rank that
#: died is noticed by the server at once (its pipe ends); this bounds a hung peer only.
COLLECTIVE_TIMEOUT_SECONDS = 600.0


@dataclass(frozen=True)
class ContextParallel:
    """One rank of a group of `degree` devices splitting each edit's sequence."""

    degree: int
    mode: Mode = "ulysses"
    rank: int = 0
    #: torch.distributed's rendezvous, `tcp://127.0.0.1:PORT` (a fresh port per start).
    init_method: str = ""
    timeout_seconds: float = COLLECTIVE_TIMEOUT_SECONDS

    def describe(self) -> str:
        """`ulysses-2 (rank 0)`, for /readyz and the logs."""
        return f"{self.mode}-{self.degree} (rank {self.rank})"
