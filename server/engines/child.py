"""The child-process transport: an Engine that runs another engine in a child process of its
own, one process per device.

Why a process and not a thread (benchmarks/RESULTS.md, "Scale-out"): a CUDA fault (an
illegal access, a device-side assert, a driver abort) poisons or kills the process it
happens in; in a process of its own it takes one device down, not the server. The child
also sees only its own GPU (CUDA_VISIBLE_DEVICES), so every library that uses "the current
device" uses the right one, and on CPU each engine gets its own interpreter and GIL.

The parent's side is a plain Engine (load → warm up → run → close) driven by the server's
engine worker. Commands go down a pipe; what happens to an edit comes back as the
contract's EngineEvents (pickled; a 1 MP image is a few MB, nothing next to an edit), and
after every command the child's state (its info, step time and LoRA cache). The job's
cancel signal is forwarded to an event the child shares the moment it is set: nothing
polls. If the child dies mid-job, the pipe ends, `run` raises DeviceLost and `alive` turns
false, so the worker restarts it (load + warm-up) before it takes another job.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol

from pipelines.contract import (
    CacheStats,
    CancelSignal,
    EditRequest,
    EditResult,
    EngineEvent,
    EngineInfo,
    LoraEntry,
    RunControl,
)
from pipelines.errors import DeviceLost, EngineError, EngineFailure
from server.engines.interface import Engine, follow

log = logging.getLogger(__name__)

#: Builds the engine inside the child from the device name it should use there ("cuda" for
#: the one GPU the child sees, or "cpu"). Must be picklable: a module-level function or a
#: functools.partial of one.
EngineFactory = Callable[[str], Engine]
#: How long a child gets to close its engine and exit before it is killed.
CLOSE_SECONDS = 30.0
#: Words of a CUDA error after which the process's CUDA context cannot be trusted.
POISONED = ("CUDA error", "device-side assert", "illegal memory access")


@dataclass(frozen=True)
class ChildState:
    """What the child reports after each command: its engine's info and step time, and its
    LoRA slots' refusal reason and cache counters."""

    info: EngineInfo | None
    steady_step_seconds: float | None
    lora_problem: str | None
    lora_stats: CacheStats | None


class LoraFolder(Protocol):
    """The LoRA folder, scanned torch-free (pipelines/loras/library.py: LoraLibrary)."""

    def entries(self) -> list[LoraEntry]:
        """Every LoRA in the folder, sorted by name (rescans)."""

    def get(self, name: str) -> LoraEntry:
        """The LoRA called `name`; InvalidInput when the folder has none by that name."""


class ChildLoras:
    """The LoRA catalog of an engine in a child process, answered in the parent.

    The server asks it from its event loop while the child may be busy with an edit, so it
    cannot ask the child: `folder` (the LoRA folder, torch-free) is scanned here, and the
    child's refusal reason and cache counters come back with its state.
    """

    def __init__(self, folder: LoraFolder) -> None:
        self.folder = folder
        self.problem: str | None = "the engine is not loaded"
        self.cache_stats = CacheStats(hits=0, misses=0, evictions=0, bytes=0,
                                      capacity_bytes=0, entries=0)

    def entries(self) -> list[LoraEntry]:
        """Every LoRA in the folder, sorted by name (rescanned here)."""
        return self.folder.entries()

    def entry(self, name: str) -> LoraEntry:
        """The LoRA called `name`; InvalidInput when the folder has none by that name."""
        return self.folder.get(name)

    def stats(self) -> CacheStats:
        """The child's adapter-cache counters after its last edit."""
        return self.cache_stats


class ProcessEngine:
    """Runs `factory(device)`'s engine in a spawned child; one caller at a time."""

    def __init__(self, factory: EngineFactory, device: str, info: EngineInfo,
                 loras: LoraFolder | None = None) -> None:
        self.factory = factory
        self.device = device
        #: What the child reports once its engine is built; until then, what it will run.
        self.info = replace(info, device=device)
        self.loras = None if loras is None else ChildLoras(loras)
        self._steady: float | None = None
        self._context = multiprocessing.get_context("spawn")  # CUDA cannot be forked
        self._cancel = self._context.Event()
        self._process: Any = None
        self._conn: Any = None

    @property
    def alive(self) -> bool:
        """Whether the child is running (False before load and after it died)."""
        return self._process is not None and self._process.is_alive()

    @property
    def pid(self) -> int | None:
        """The child's process id, while it runs."""
        return self._process.pid if self.alive else None

    def load(self) -> None:
        """Start the child, build the engine there and load its weights."""
        self._stop_child()
        parent, child = self._context.Pipe()
        self._process = self._context.Process(
            target=child_main, args=(child, self.factory, self.device, self._cancel),
            name=f"kontext-engine-{self.device}", daemon=True)
        self._process.start()
        child.close()  # the child holds its end: when it dies, the pipe ends here
        self._conn = parent
        self._call("load", RunControl())

    def warmup(self) -> None:
        """The child's engine runs its warm-up edit."""
        self._call("warmup", RunControl())

    def run(self, request: EditRequest, control: RunControl) -> EditResult:
        """Run one edit in the child; its events come back as they happen, and its cancel
        signal reaches the child as soon as it is set."""
        self._cancel.clear()
        with control.cancel.forwarded_to(self._cancel.set):
            result = self._call("run", control, request)
        assert result is not None
        return result

    def steady_step_seconds(self) -> float | None:
        """The child engine's steady-state step time, as of its last warm-up or edit."""
        return self._steady

    def close(self) -> None:
        """Close the child's engine and let the child exit."""
        if self.alive:
            try:
                self._conn.send(("close", None))
                self._process.join(CLOSE_SECONDS)
            except (OSError, EOFError):
                pass
        self._stop_child()

    def kill(self) -> None:
        """Stop the child at once (its group is broken; nothing it holds is kept)."""
        self._stop_child()

    def _call(self, command: str, control: RunControl, argument: Any = None
              ) -> EditResult | None:
        """Send one command; follow its events until the child's state ends it."""
        if not self.alive:
            raise DeviceLost(f"the engine process of {self.device} is not running")
        result = None
        try:
            self._conn.send((command, argument))
            while not isinstance(message := self._conn.recv(), ChildState):
                result = follow(message, control) or result
        except (EOFError, OSError) as exc:
            self._process.join(1.0)
            raise DeviceLost(f"the engine process of {self.device} died "
                             f"(exit code {self._process.exitcode})") from exc
        self._learn(message)
        return result

    def _learn(self, state: ChildState) -> None:
        if state.info is not None:
            self.info = replace(state.info, device=self.device)
        self._steady = state.steady_step_seconds
        if self.loras is not None:
            self.loras.problem = state.lora_problem
            if state.lora_stats is not None:
                self.loras.cache_stats = state.lora_stats

    def _stop_child(self) -> None:
        if self._process is not None and self._process.is_alive():
            self._process.kill()
            self._process.join(CLOSE_SECONDS)
        if self._conn is not None:
            self._conn.close()
        self._process = self._conn = None


def child_main(conn, factory: EngineFactory, device: str, cancel) -> None:
    """The child: build the engine for `device`, then answer commands until `close`."""
    # The launcher's job, before anything touches CUDA: this process sees its GPU only.
    if device.startswith("cuda:"):
        os.environ["CUDA_VISIBLE_DEVICES"] = visible_gpu(device)
    logging.basicConfig(level=logging.INFO,
                        format=f"%(asctime)s %(levelname)s [engine {device}] %(message)s")
    engine = None
    control = RunControl(cancel=CancelSignal(cancel), emit=conn.send)
    while True:
        try:
            command, argument = conn.recv()
        except EOFError:  # the parent is gone
            command, argument = "close", None
        if command == "close":
            if engine is not None:
                engine.close()
            return
        try:
            if command == "load":
                engine = factory("cuda" if device.startswith("cuda") else device)
                engine.load()
            elif command == "warmup":
                engine.warmup()
            else:
                conn.send(EngineEvent("done", result=engine.run(argument, control)))
        except Exception as exc:
            conn.send(EngineEvent("failed", error=_portable(exc)))
            if any(word in str(exc) for word in POISONED):
                return  # exit: the parent restarts a fresh process with a fresh context
            continue
        conn.send(_state(engine))


def visible_gpu(device: str) -> str:
    """The GPU `cuda:N` is, as CUDA_VISIBLE_DEVICES names it: the Nth of the GPUs this
    process sees (a Ray replica sees only the GPUs it reserved), else GPU N."""
    index = int(device.split(":", 1)[1])
    seen = [gpu for gpu in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if gpu]
    return seen[index] if index < len(seen) else str(index)


def _state(engine: Engine) -> ChildState:
    loras = engine.loras
    return ChildState(engine.info, engine.steady_step_seconds(),
                      loras.problem if loras is not None else None,
                      loras.stats() if loras is not None else None)


def _portable(exc: Exception) -> EngineError:
    """`exc` as an engine error that pickles on its own (no traceback, no torch cause)."""
    if isinstance(exc, EngineError):
        return type(exc)(str(exc))
    return EngineFailure(f"{type(exc).__name__}: {exc}")
