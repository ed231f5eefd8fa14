"""Graceful shutdown of the app: stop taking jobs, let accepted ones finish, then stop.

The first shutdown request (SIGTERM, or the lifespan ending) turns readiness false and
makes new jobs answer 503, while queued and running jobs, on every backend, get
`shutdown_grace_seconds` to finish; what is left then is cancelled and answered 503
`shutdown`. A second request cancels what is left at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from server.errors import ShuttingDown

if TYPE_CHECKING:
    from server.jobs.service import JobService

log = logging.getLogger(__name__)


class ShutdownController:
    """Drains the job service once, however shutdown was asked for."""

    def __init__(self, service: JobService, grace: float) -> None:
        self.service = service
        self.grace = grace
        self._drain: asyncio.Task[bool] | None = None

    @property
    def draining(self) -> bool:
        """Whether shutdown has begun."""
        return self._drain is not None

    def begin(self, on_drained: Callable[[], None] | None = None) -> None:
        """Stop accepting jobs and start draining; call `on_drained` when done."""
        self.service.accepting = False
        if self._drain is None:
            log.info("shutting down: no new jobs; waiting up to %g s for %d job(s) in flight "
                     "(signal again to cancel them)", self.grace, self.service.in_flight)
            self._drain = asyncio.create_task(self._run_drain(), name="shutdown-drain")
        if on_drained is not None:
            self._drain.add_done_callback(lambda _task: on_drained())

    def abort(self) -> None:
        """Cancel everything still queued or running (a second signal)."""
        log.warning("second shutdown signal: cancelling %d job(s) in flight",
                    self.service.in_flight)
        self.service.cancel_all(ShuttingDown("the server was told to stop at once; the job "
                                             "was cancelled"))

    async def wait(self) -> bool:
        """Drain (or join the drain under way); True when no job had to be cancelled."""
        self.begin()
        assert self._drain is not None
        return await self._drain

    async def _run_drain(self) -> bool:
        drained = await self.service.drain(self.grace)
        log.info("drained: %s", "every job finished" if drained else
                 "jobs left at the end of the grace period were cancelled")
        return drained
