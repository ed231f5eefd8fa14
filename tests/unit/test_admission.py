"""The one admission mechanism: try now (429) or wait in line, first come first served."""

from __future__ import annotations

import asyncio

import pytest

from server.errors import Overloaded
from server.jobs.admission import Lane


def lane(capacity: int = 2, retry_after: float = 7.2) -> Lane:
    return Lane("test", capacity, lambda: retry_after, "the test lane is full")


def test_try_enter_admits_up_to_capacity_then_refuses_with_retry_after():
    line = lane()
    line.try_enter("a")
    line.try_enter("b")
    with pytest.raises(Overloaded) as refused:
        line.try_enter("c")
    assert refused.value.status == 429
    assert refused.value.headers() == {"Retry-After": "7"}
    assert "the test lane is full" in refused.value.message
    line.leave("a")
    line.try_enter("c")
    assert [line.position(job) for job in ("b", "c")] == [0, 1]


def test_waiters_get_places_in_order_and_a_sync_job_cannot_overtake_them():
    async def scenario() -> list[str]:
        line = lane(capacity=1)
        line.try_enter("running")
        admitted: list[str] = []

        async def wait(job: str) -> None:
            await line.enter(job)
            admitted.append(job)

        waiters = [asyncio.create_task(wait(job)) for job in ("first", "second")]
        await asyncio.sleep(0)  # both are in line now
        assert [line.position(job) for job in ("first", "second")] == [1, 2]
        with pytest.raises(Overloaded):
            line.try_enter("sync")  # the line is not empty: no overtaking
        line.leave("running")
        await waiters[0]
        assert admitted == ["first"] and not waiters[1].done()
        line.leave("first")
        await waiters[1]
        return admitted

    assert asyncio.run(scenario()) == ["first", "second"]


def test_a_cancelled_waiter_leaves_the_line_and_frees_nothing_it_did_not_hold():
    async def scenario() -> Lane:
        line = lane(capacity=1)
        line.try_enter("running")
        waiter = asyncio.create_task(line.enter("impatient"))
        await asyncio.sleep(0)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert line.position("impatient") is None and line.waiting == 0
        line.leave("running")
        return line

    line = asyncio.run(scenario())
    assert line.inside == 0 and not line.full
