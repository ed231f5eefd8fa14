"""The engine deployment: one replica per GPU, each the same engine the single-machine
server runs (built by server/engine_build.py, driven by the same engine pool of one); with
--context-parallel K, one replica per K GPUs, each a group of K ranks (server/engines/
group.py) that splits every edit between them.

A call to `run` streams what happens to the job as the contract's EngineEvents, the ones
every transport carries, so the ingress can move the job to `processing`, report its steps
(async progress) and learn its result:

    started (on this replica)  →  step …  →  done (EditResult) | failed (engine error)

Errors are sent as values (engine errors, which pickle), not raised, so the ingress sees
the engine's own error and not Ray's wrapping of it. Cancelling the call (the client went
away, the time limit, DELETE) is the cancellation Ray carries: it cancels this generator,
which sets the job's cancel signal, and the edit stops at its next step. Ray Serve is
imported by the caller (server/ray/app.py); this class does not need it except to name
its replica.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from functools import partial

from pipelines.contract import EditRequest, EngineEvent, EngineInfo, RunControl
from pipelines.errors import EngineError, EngineFailure
from server.engine_build import build_engine, build_replica_group, share_cpu
from server.engines.interface import Engine
from server.engines.pool import EnginePool
from server.settings import Settings

log = logging.getLogger(__name__)

def replica_name() -> str:
    """`replica:<id>` of the replica this runs in (`replica:local` outside Ray Serve)."""
    try:
        from ray import serve

        return f"replica:{serve.get_replica_context().replica_id.unique_id}"
    except Exception:  # not in a replica (a unit of it driven directly)
        return "replica:local"


class EngineReplica:
    """One engine on this replica's device; one job at a time (max_ongoing_requests=1)."""

    async def __init__(self, settings: Settings,
                       factory: Callable[..., Engine] | None = None,
                       cpu_threads: int | None = None) -> None:
        # Ray Serve marks the replica running (routable) once this returns: load and warm
        # up first. An exception here makes Ray Serve start another replica.
        self.name = replica_name()
        if settings.context_parallel != 1:  # this replica is a group of K ranks
            engine = build_replica_group(settings, factory)
        else:
            engine = (factory or partial(build_engine, settings))(None)
        if engine.info.device == "cpu" and cpu_threads:
            share_cpu(cpu_threads)
        if settings.context_parallel != 1:  # served_by names the replica and its devices
            self.name = f"{self.name} [{engine.info.device}]"
        self.pool = EnginePool([engine], [self.name], warmup=settings.warmup)
        await self.pool.start()
        refusal = self.pool.unavailable()
        if refusal is not None:
            raise RuntimeError(f"{self.name}: {refusal.message}")

    async def info(self) -> EngineInfo:
        """What this replica runs."""
        return self.pool.info

    async def check_health(self) -> None:
        """Ray Serve's health check: a hung or failed engine gets the replica replaced."""
        ok, body = self.pool.health()
        if not ok:
            raise RuntimeError(f"{self.name} is unhealthy: {body['error'] or body['stuck']}")

    async def run(self, request: EditRequest) -> AsyncIterator[EngineEvent]:
        """Run one edit, streaming its events (see the module docstring)."""
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[EngineEvent] = asyncio.Queue()

        def emit(event: EngineEvent) -> None:  # on the engine's thread, or this loop's
            loop.call_soon_threadsafe(events.put_nowait, event)

        task = asyncio.create_task(self.pool.run(request, RunControl(emit=emit)))
        try:
            while not task.done() or not events.empty():
                getting = asyncio.ensure_future(events.get())
                await asyncio.wait({getting, task}, return_when=asyncio.FIRST_COMPLETED)
                if getting.done():
                    yield getting.result()
                else:
                    getting.cancel()
            yield _final(task)
        finally:
            if not task.done():
                task.cancel()  # the caller cancelled: stop the edit, wait for the engine
                await asyncio.wait({task})


def _final(task: asyncio.Task) -> EngineEvent:
    exc = task.exception()
    if exc is None:
        return EngineEvent("done", result=task.result().result)
    if isinstance(exc, EngineError):
        return EngineEvent("failed", error=type(exc)(str(exc)))
    log.error("engine replica failed unexpectedly: %r", exc)
    return EngineEvent("failed", error=EngineFailure(f"{type(exc).__name__}: {exc}"))
