"""Admission: a bounded line of jobs in front of something that runs them.

One mechanism for every bound: the engine (queue + running jobs), forwarded jobs in flight,
unfinished async jobs. `try_enter` answers at once (429 with an honest Retry-After) for
synchronous jobs; `enter` waits in line, first come first served, for async ones. A place
that frees is handed to the first waiter directly, so nobody overtakes the line and nothing
polls.

Each job comes from a client (a token, or an address on a server without tokens), and one
client holds at most its share of a lane's places (`share` of them, rounded up, at least
one). A client at its share is refused (429) or, waiting, is passed over until one of its
own places frees: it cannot lock the others out, and its waiting jobs do not hold up
theirs.

A request whose body is still being read holds a `Reservation`: a place set aside in each
lane its job could need (its type is known only once the body is parsed), turned into that
lane's place when the job is admitted and given back otherwise. Later requests count
reserved places as taken, so a full lane is refused before its body is read.
"""

from __future__ import annotations

import asyncio
import math
from collections import Counter, OrderedDict
from collections.abc import Callable

from server.errors import Overloaded

#: Who a job comes from, for fairness: a token's fingerprint, `addr:<ip>`, or None.
Client = str | None


class Lane:
    """At most `capacity` jobs inside, at most `share` of them (rounded up) from one client;
    the rest wait in order (or are refused)."""

    def __init__(self, name: str, capacity: int, retry_after: Callable[[], float],
                 full_message: str, share: float = 1.0) -> None:
        self.name = name
        self.capacity = capacity
        self.retry_after = retry_after
        self._full_message = full_message
        #: Places one client may hold (inside or reserved).
        self.client_limit = max(1, math.ceil(capacity * share))
        self._inside: dict[str, Client] = {}  # insertion-ordered: the order jobs came in
        self._reserved: Counter[Client] = Counter()  # places held for bodies being read
        self._waiting: OrderedDict[str, tuple[Client, asyncio.Future[None]]] = OrderedDict()

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
        return self._reserved.total()

    def ids(self) -> list[str]:
        """The jobs inside, then those waiting, in their order."""
        return [*self._inside, *self._waiting]

    def held(self, client: Client) -> int:
        """Places `client` holds: its jobs inside and its reserved places."""
        return sum(1 for c in self._inside.values() if c == client) + self._reserved[client]

    def _room(self) -> bool:
        return len(self._inside) + self.reserved < self.capacity

    def _first_eligible(self) -> str | None:
        """The first waiter whose client is under its share (the next to get a place)."""
        return next((job_id for job_id, (client, place) in self._waiting.items()
                     if not place.done() and self.held(client) < self.client_limit), None)

    @property
    def full(self) -> bool:
        """Whether a new job (of a client holding nothing here) would wait or be refused."""
        return not self._room() or self._first_eligible() is not None

    def full_for(self, client: Client) -> bool:
        """Whether a new job of `client` would wait or be refused."""
        return self.full or self.held(client) >= self.client_limit

    def refusal(self, client: Client = None) -> Overloaded:
        """The 429 a job of `client` gets when the lane is full for it."""
        retry_after = max(1, round(self.retry_after()))
        if not self.full and self.held(client) >= self.client_limit:
            return Overloaded(
                f"this client holds {self.held(client)} of the {self.capacity} places of the "
                f"{self.name} queue, the most one client may hold (client_share); retry "
                "when one of its jobs is done", retry_after=retry_after)
        return Overloaded(self._full_message, retry_after=retry_after)

    def try_enter(self, job_id: str, client: Client = None) -> None:
        """Admit `job_id` now, or raise Overloaded (429 + Retry-After)."""
        if self.full_for(client):
            raise self.refusal(client)
        self._inside[job_id] = client

    async def enter(self, job_id: str, client: Client = None) -> None:
        """Admit `job_id`, waiting in line for a place; cancelling leaves the line."""
        if not self.full_for(client):
            self._inside[job_id] = client
            return
        place = asyncio.get_running_loop().create_future()
        self._waiting[job_id] = (client, place)
        try:
            await place
        except asyncio.CancelledError:
            if self._waiting.pop(job_id, None) is None:
                self.leave(job_id)  # the place was handed over just as we were cancelled
            raise

    def reserve(self, client: Client = None) -> None:
        """Hold a place (the lane must not be full for `client`) until `claim` or
        `unreserve`."""
        self._reserved[client] += 1

    def claim(self, job_id: str, client: Client = None) -> None:
        """Turn `client`'s held place into `job_id`'s place: never refused."""
        self._drop_reserved(client)
        self._inside[job_id] = client

    def unreserve(self, client: Client = None) -> None:
        """Give a held place back (to the first waiter that may take it, if any)."""
        self._drop_reserved(client)
        self._hand_over()

    def _drop_reserved(self, client: Client) -> None:
        self._reserved[client] -= 1
        if self._reserved[client] <= 0:
            del self._reserved[client]

    def leave(self, job_id: str) -> None:
        """`job_id` is done (or never came in): free its place for the first waiter."""
        self._inside.pop(job_id, None)
        self._hand_over()

    def _hand_over(self) -> None:
        while self._room() and (job_id := self._first_eligible()) is not None:
            client, place = self._waiting.pop(job_id)
            self._inside[job_id] = client
            place.set_result(None)

    def position(self, job_id: str) -> int | None:
        """How many jobs are ahead of `job_id` in this lane (inside or waiting), or None."""
        if job_id in self._inside:
            return list(self._inside).index(job_id)
        if job_id in self._waiting:
            return len(self._inside) + list(self._waiting).index(job_id)
        return None


class Reservation:
    """Places held for `client` in some lanes while a request's body is read (see the
    module doc)."""

    def __init__(self, lanes: list[Lane], client: Client = None) -> None:
        for lane in lanes:
            lane.reserve(client)
        self._lanes = lanes
        self.client = client

    def admit(self, lane: Lane, job_id: str) -> None:
        """Admit `job_id` to `lane`: its held place if there is one, else `try_enter` (429)."""
        held = lane in self._lanes
        if held:
            self._lanes.remove(lane)
            lane.claim(job_id, self.client)
        self.release()
        if not held:
            lane.try_enter(job_id, self.client)

    def release(self) -> None:
        """Give back every place still held (idempotent)."""
        lanes, self._lanes = self._lanes, []
        for lane in lanes:
            lane.unreserve(self.client)


def reserve_in(lanes: list[Lane], client: Client = None) -> Reservation:
    """Hold a place for `client` in each lane that has one for it; Overloaded (429) when
    every lane is full for it. With no lane at all (nothing to bound) nothing is held."""
    open_lanes = [lane for lane in lanes if not lane.full_for(client)]
    if lanes and not open_lanes:
        raise min((lane.refusal(client) for lane in lanes), key=lambda r: r.retry_after)
    return Reservation(open_lanes, client)
