"""Admission: a bounded line of jobs in front of something that runs them.

One mechanism for every bound: the engine (queue + running jobs), forwarded jobs in flight,
unfinished async jobs. `try_enter` answers at once (429 with an honest Retry-After) for
synchronous jobs; `enter` waits in line, first come first served, for async ones. A place
that frees is handed to the first waiter directly, so nobody overtakes the line and nothing
polls.

A request whose body is still being read holds a `Reservation`: a place set aside in each
lane its job could need (its type is known only once the body is parsed), turned into that
lane's place when the job is admitted and given back otherwise. Later requests count
reserved places as taken, so a full lane is refused before its body is read.
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
        self._reserved = 0  # places held for requests whose bodies are being read
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
    def reserved(self) -> int:
        """Places held for requests whose bodies are being read."""
        return self._reserved

    @property
    def full(self) -> bool:
        """Whether a new job would have to wait (or be refused)."""
        return len(self._inside) + self._reserved >= self.capacity or bool(self._waiting)

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

    def reserve(self) -> None:
        """Hold a place (the lane must not be full) until `claim` or `unreserve`."""
        self._reserved += 1

    def claim(self, job_id: str) -> None:
        """Turn a held place into `job_id`'s place: never refused."""
        self._reserved -= 1
        self._inside[job_id] = None

    def unreserve(self) -> None:
        """Give a held place back (to the first waiter, if any)."""
        self._reserved -= 1
        self._hand_over()

    def leave(self, job_id: str) -> None:
        """`job_id` is done (or never came in): free its place for the first waiter."""
        self._inside.pop(job_id, None)
        self._hand_over()

    def _hand_over(self) -> None:
        while self._waiting and len(self._inside) + self._reserved < self.capacity:
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


class Reservation:
    """Places held in some lanes while a request's body is read (see the module doc)."""

    def __init__(self, lanes: list[Lane]) -> None:
        for lane in lanes:
            lane.reserve()
        self._lanes = lanes

    def admit(self, lane: Lane, job_id: str) -> None:
        """Admit `job_id` to `lane`: its held place if there is one, else `try_enter` (429)."""
        held = lane in self._lanes
        if held:
            self._lanes.remove(lane)
            lane.claim(job_id)
        self.release()
        if not held:
            lane.try_enter(job_id)

    def release(self) -> None:
        """Give back every place still held (idempotent)."""
        lanes, self._lanes = self._lanes, []
        for lane in lanes:
            lane.unreserve()


def reserve_in(lanes: list[Lane]) -> Reservation:
    """Hold a place in each lane that has one; Overloaded (429) when every lane is full.

    With no lane at all (nothing to bound) nothing is held.
    """
    open_lanes = [lane for lane in lanes if not lane.full]
    if lanes and not open_lanes:
        raise min(lanes, key=lambda lane: lane.refusal().retry_after).refusal()
    return Reservation(open_lanes)
