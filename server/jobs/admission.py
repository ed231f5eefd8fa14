"""Admission: a bounded line of jobs in front of something that runs them.

One mechanism for every bound: the engine (queue + running jobs), forwarded jobs in flight,
unfinished async jobs. `try_enter` answers at once (429 with an honest Retry-After) for
synchronous jobs; `enter` waits in line, first come first served, for async ones. A place
that frees is handed to the first waiter directly, so nobody overtakes the line and nothing
polls.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable

from server.errors import Overloaded


class Lane:
    """At most `capacity` jobs inside; the rest wait in order (or are refused)."""

    def __init__(self, name: str, capacity: int, retry_after: Callable[[], float],
                 full_message: str) -> None:
        self.name = name
        self.capacity = capacity
        self._retry_after = retry_after
        self._full_message = full_message
        self._inside: dict[str, None] = {}  # insertion-ordered: the order jobs came in
        self._waiting: OrderedDict[str, asyncio.Future[None]] = OrderedDict()

    @property
    def inside(self) -> int:
        """Jobs admitted and not yet gone."""
        return len(self._inside)

    @property
    def waiting(self) -> int:
        """Jobs waiting for a place."""
        return len(self._waiting)

    @property
    def full(self) -> bool:
        """Whether a new job would have to wait (or be refused)."""
        return len(self._inside) >= self.capacity or bool(self._waiting)

    def refusal(self) -> Overloaded:
        """The 429 a job gets when the lane is full."""
        return Overloaded(self._full_message, retry_after=max(1, round(self._retry_after())))

    def try_enter(self, job_id: str) -> None:
        """Admit `job_id` now, or raise Overloaded (429 + Retry-After)."""
        if self.full:
            raise self.refusal()
        self._inside[job_id] = None

    async def enter(self, job_id: str) -> None:
        """Admit `job_id`, waiting in line for a place; cancelling leaves the line."""
        if not self.full:
            self._inside[job_id] = None
            return
        place = asyncio.get_running_loop().create_future()
        self._waiting[job_id] = place
        try:
            await place
        except asyncio.CancelledError:
            if self._waiting.pop(job_id, None) is None:
                self.leave(job_id)  # the place was handed over just as we were cancelled
            raise

    def leave(self, job_id: str) -> None:
        """`job_id` is done (or never came in): free its place for the first waiter."""
        self._inside.pop(job_id, None)
        while self._waiting and len(self._inside) < self.capacity:
            waiter_id, place = self._waiting.popitem(last=False)
            if not place.done():
                self._inside[waiter_id] = None
                place.set_result(None)

    def position(self, job_id: str) -> int | None:
        """How many jobs are ahead of `job_id` in this lane (inside or waiting), or None."""
        if job_id in self._inside:
            return list(self._inside).index(job_id)
        if job_id in self._waiting:
            return len(self._inside) + list(self._waiting).index(job_id)
        return None
