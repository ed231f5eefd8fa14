"""The group transport: one engine made of K child processes, one per device, that split
each edit's sequence between them (context parallelism, pipelines/parallel).

Every rank runs the same command at the same time (load, warm-up, each edit): the ranks
meet in torch.distributed collectives inside the transformer, so a command that reaches
some ranks and not others would hang them. Rank 0's events (its steps, its result) are the
job's; the others' are dropped. The job's cancel signal is forwarded to every rank, and the
ranks agree at each step on whether to stop.

A rank that dies (killed, out of memory, a CUDA fault) leaves the others waiting in a
collective or failing on a broken connection: the group is only whole again after a
restart of all its processes. So any rank lost, or ranks that disagree on how an edit
ended, fail the job with DeviceLost and stop every process; the worker then restarts the
group (load + warm-up) while the other groups go on serving.
"""

from __future__ import annotations

import functools
import logging
import socket
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import replace
from typing import Any

from pipelines.contract import EditRequest, EditResult, EngineInfo, RunControl
from pipelines.errors import DeviceLost
from server.engines.child import LoraFolder, ProcessEngine

log = logging.getLogger(__name__)

#: After one rank failed, how long the others get to fail the same way (an invalid input or
#: a cancel they all agreed on) before the group is taken as broken and restarted.
AGREE_SECONDS = 60.0


def free_port() -> int:
    """A TCP port free on the loopback now: the group's rendezvous (fresh per start)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class GroupEngine:
    """K ranks, one process per device, that run each edit together; one caller at a time.

    `factory(device, rank, init_method)` builds rank `rank`'s engine inside its process (a
    module-level function or a partial of one: it is pickled).
    """

    def __init__(self, factory, devices: list[str], label: str, info: EngineInfo,
                 loras: LoraFolder | None = None) -> None:
        self.factory = factory
        self.devices = devices
        self.label = label
        self.ranks = [ProcessEngine(factory, device, info, loras if rank == 0 else None)
                      for rank, device in enumerate(devices)]
        self._pool = ThreadPoolExecutor(max_workers=len(devices),
                                        thread_name_prefix=f"group-{label}")

    @property
    def info(self) -> EngineInfo:
        """Rank 0's engine info, its device the group's devices (`cpu:0,cpu:1`)."""
        return replace(self.ranks[0].info, device=self.label)

    @property
    def loras(self):
        """Rank 0's LoRA catalog: every rank loads the same LoRAs, so its counters speak
        for the group."""
        return self.ranks[0].loras

    @property
    def alive(self) -> bool:
        """Whether every rank's process runs."""
        return all(rank.alive for rank in self.ranks)

    @property
    def pids(self) -> list[int | None]:
        """The ranks' process ids, rank 0 first."""
        return [rank.pid for rank in self.ranks]

    def load(self) -> None:
        """Start every rank (a fresh rendezvous each time) and load the weights on all."""
        self._stop_all()
        init_method = f"tcp://127.0.0.1:{free_port()}"
        for index, rank in enumerate(self.ranks):
            rank.factory = functools.partial(self.factory, rank=index, init_method=init_method)
        self._together(lambda rank, _control: rank.load())

    def warmup(self) -> None:
        """Every rank runs the warm-up edits together."""
        self._together(lambda rank, _control: rank.warmup())

    def run(self, request: EditRequest, control: RunControl) -> EditResult:
        """Run one edit on every rank; rank 0's events and result are the job's."""
        result = self._together(lambda rank, rank_control: rank.run(request, rank_control),
                                control)
        assert result is not None
        return result

    def steady_step_seconds(self) -> float | None:
        """Rank 0's steady-state step time (all ranks step together)."""
        return self.ranks[0].steady_step_seconds()

    def close(self) -> None:
        """Close every rank's engine and let the processes exit."""
        list(self._pool.map(lambda rank: rank.close(), self.ranks))

    def _together(self, command, control: RunControl | None = None) -> Any:
        """`command(rank, control)` on every rank at once; rank 0's answer. The job's cancel
        reaches every rank; a rank lost or ranks that disagree make DeviceLost."""
        control = control or RunControl()
        silent = [RunControl() for _ in self.ranks[1:]]
        controls = [control, *silent]
        with control.cancel.forwarded_to(lambda: [c.cancel.set() for c in silent]):
            futures = [self._pool.submit(command, rank, rank_control)
                       for rank, rank_control in zip(self.ranks, controls, strict=True)]
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            if all(f in done and f.exception() is None for f in futures):
                return futures[0].result()
            return self._failed(futures)

    def _failed(self, futures: list[Future]) -> Any:
        """One rank failed: the same failure on all (an input refused, a cancel) is the
        job's; anything else breaks the group, which is stopped (DeviceLost)."""
        lost_now = any(f.done() and isinstance(f.exception(), DeviceLost) for f in futures)
        # A lost rank leaves the others in a collective: nothing to wait for.
        done, pending = wait(futures, timeout=0 if lost_now else AGREE_SECONDS)
        errors = [f.exception() if f in done else None for f in futures]
        lost = [i for i, error in enumerate(errors) if isinstance(error, DeviceLost)]
        agreed = not pending and not lost and all(errors) and \
            len({type(error) for error in errors}) == 1
        if agreed:
            raise errors[0]
        self._stop_all()
        wait(futures)
        first = lost[0] if lost else next(i for i, error in enumerate(errors) if error)
        log.error("group %s broken by rank %d (%s): %s; stopping all its processes",
                  self.label, first, self.devices[first], errors[first])
        raise DeviceLost(f"rank {first} ({self.devices[first]}) of the group {self.label} "
                         f"failed ({errors[first]}); the group restarts") from errors[first]

    def _stop_all(self) -> None:
        for rank in self.ranks:
            rank.kill()
