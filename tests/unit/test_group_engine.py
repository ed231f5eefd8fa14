"""The group transport's rules, on stand-in ranks (no processes): every rank runs each
command; rank 0's events and result are the job's; the same failure on every rank is the
job's; a lost rank, or ranks that end differently, break the group: DeviceLost, and every
rank is stopped. The real ranks are tested in tests/e2e/test_context_parallel_cpu.py."""

from __future__ import annotations

import threading
from unittest import mock

import pytest

from pipelines.contract import EditRequest, EngineInfo, RunControl
from pipelines.errors import DeviceLost, EngineFailure, InvalidInput
from server.engines import group as group_module
from server.engines.group import GroupEngine

INFO = EngineInfo(model="m", device="cpu", dtype="float32", demo=True, tier="exact")
REQUEST = EditRequest("p", None, 512, 512, 2, 2.5, 1)


class Rank:
    """A stand-in rank: answers `run` with `outcome` (a value, or an error to raise);
    `hang` blocks it until it is killed."""

    def __init__(self, outcome, hang: bool = False) -> None:
        self.outcome, self.hang = outcome, hang
        self.killed = threading.Event()
        self.cancelled = False
        self.info, self.loras = INFO, None

    def run(self, request, control: RunControl):
        control.step(1, 2)
        self.cancelled = control.cancelled
        if self.hang:
            self.killed.wait()
            raise DeviceLost("killed")
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return self.outcome

    def kill(self) -> None:
        self.killed.set()


def group_of(*ranks: Rank) -> GroupEngine:
    engine = GroupEngine(None, ["cpu"] * len(ranks), "cpu:0,cpu:1", INFO)
    engine.ranks = list(ranks)
    return engine


def test_rank_zero_speaks_for_the_group():
    events = []
    engine = group_of(Rank("result 0"), Rank("result 1"))
    assert engine.run(REQUEST, RunControl(emit=events.append)) == "result 0"
    assert [(e.kind, e.step) for e in events] == [("step", 1)]  # rank 1's are dropped


def test_a_cancel_reaches_every_rank():
    control = RunControl()
    control.cancel.set()
    ranks = Rank("a"), Rank("b")
    group_of(*ranks).run(REQUEST, control)
    assert all(rank.cancelled for rank in ranks)


def test_the_same_failure_on_every_rank_is_the_jobs():
    ranks = Rank(InvalidInput("too small")), Rank(InvalidInput("too small"))
    with pytest.raises(InvalidInput, match="too small"):
        group_of(*ranks).run(REQUEST, RunControl())
    assert not any(rank.killed.is_set() for rank in ranks)


def test_a_lost_rank_breaks_the_group():
    ranks = Rank("a", hang=True), Rank(DeviceLost("rank 1 died"))
    with pytest.raises(DeviceLost, match=r"rank 1 \(cpu\) of the group cpu:0,cpu:1"):
        group_of(*ranks).run(REQUEST, RunControl())
    assert all(rank.killed.is_set() for rank in ranks)


def test_ranks_that_end_differently_break_the_group():
    ranks = Rank(EngineFailure("gloo: connection closed")), Rank("b")
    with pytest.raises(DeviceLost, match="rank 0"):
        group_of(*ranks).run(REQUEST, RunControl())
    assert all(rank.killed.is_set() for rank in ranks)


def test_a_rank_that_never_answers_breaks_the_group():
    ranks = Rank(EngineFailure("out of memory")), Rank("b", hang=True)
    with mock.patch.object(group_module, "AGREE_SECONDS", 0.0), \
            pytest.raises(DeviceLost, match="out of memory"):
        group_of(*ranks).run(REQUEST, RunControl())
    assert all(rank.killed.is_set() for rank in ranks)
