"""The one admission mechanism: try now (429) or wait in line, first come first served."""

from __future__ import annotations

import asyncio

import pytest

from server.errors import Overloaded
from server.jobs.admission import Lane, reserve_in


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


def test_a_client_holds_at_most_its_share_and_others_still_enter():
    line = Lane("test", 4, lambda: 3.0, "the test lane is full", share=0.5)
    assert line.client_limit == 2
    line.try_enter("a1", "alice")
    line.reserve("alice")  # a body of hers still being read
    with pytest.raises(Overloaded) as refused:
        line.try_enter("a2", "alice")
    assert "holds 2 of the 4 places" in refused.value.message
    assert "client_share" in refused.value.message
    line.try_enter("b1", "bob")
    line.try_enter("b2", "bob")
    assert line.full
    line.unreserve("alice")
    line.try_enter("a2", "alice")


def test_waiters_past_their_share_are_passed_over_until_their_own_place_frees():
    async def scenario() -> list[str]:
        line = Lane("test", 3, lambda: 3.0, "the test lane is full", share=0.5)
        line.try_enter("a1", "alice")
        line.try_enter("a2", "alice")
        admitted: list[str] = []

        async def wait(job: str, client: str) -> None:
            await line.enter(job, client)
            admitted.append(job)

        a3 = asyncio.create_task(wait("a3", "alice"))  # at her share: waits
        await asyncio.sleep(0)
        assert not line.full  # her waiting job holds nobody else up
        line.try_enter("b1", "bob")
        assert line.full and not a3.done()
        line.leave("b1")  # a place, but not hers to take
        await asyncio.sleep(0)
        assert not a3.done()
        line.leave("a1")  # one of hers: her waiting job takes it
        await a3
        return admitted

    assert asyncio.run(scenario()) == ["a3"]


def test_reservations_count_for_their_client():
    line = Lane("test", 2, lambda: 1.0, "the test lane is full", share=0.5)
    held = reserve_in([line], "alice")
    with pytest.raises(Overloaded):
        reserve_in([line], "alice")
    reserve_in([line], "bob").admit(line, "b1")
    held.admit(line, "a1")
    assert line.position("a1") == 1 and line.reserved == 0
