"""The one server object: everything the routes (through FastAPI dependencies,
server/api/deps.py), the lifespan and the CLI reach of one server. The composition root
(server/wiring.py: build_server) builds it; this module only says what it holds, so that
the routes can name it without importing what builds it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from server.asyncjobs.jobs import AsyncJobs
    from server.engines.interface import Engines
    from server.jobs.admission import Lane
    from server.jobs.screening import ContentScreen
    from server.jobs.service import JobService
    from server.jobs.shutdown import ShutdownController
    from server.jobs.uploads import UploadBudget
    from server.media.marks import OutputMarks
    from server.metrics import Metrics
    from server.settings import Settings
    from server.settings.tokens import TokenChecker


NO_FILTER = (
    "NO CONTENT FILTER is active (safety off) on real FLUX.1 [dev] weights. The FLUX.1 [dev] "
    "Non-Commercial License, §2(e)(i), lets you create outputs only if you implement and "
    "maintain content filtering measures, or have every output reviewed by a person before it "
    "is distributed. Start with --safety block (or flag) once the classifier is on disk "
    "(weights/README.md), or make sure every output is reviewed. See docs/safety.md.")
NO_MARKS = (
    "AI DISCLOSURE MARKS ARE OFF (disclosure off): outputs carry no machine-readable 'made "
    "with AI' marks. The FLUX.1 [dev] Non-Commercial License, §2(e)(ii), asks that outputs "
    "disclose they were generated or modified with AI where the law requires it (e.g. the EU "
    "AI Act, Art. 50(2)). See docs/safety.md.")


@dataclass(frozen=True)
class Safeguards:
    """The content filter (None: safety off) and the marks every output gets."""

    screen: ContentScreen | None
    marks: OutputMarks
    policy: str
    warnings: tuple[str, ...] = ()
    #: Said of the filter at startup and in /readyz (the demo classifier is one).
    note: str | None = None

    def status(self) -> dict[str, Any]:
        """/readyz's `safety` and `disclosure`, with the warnings the log gave at startup."""
        safety: dict[str, Any] = {"policy": self.policy,
                                  "checks": self.screen.describe() if self.screen else []}
        disclosure = self.marks.status()
        if self.note:
            safety["note"] = self.note
        if NO_FILTER in self.warnings:
            safety["warning"] = NO_FILTER
        if NO_MARKS in self.warnings:
            disclosure["warning"] = NO_MARKS
        return {"safety": safety, "disclosure": disclosure}


@dataclass
class JobsPath:
    """Everything between the routes and the engine."""

    service: JobService
    engines: Engines
    engine_lane: Lane
    queue_size: int
    safeguards: Safeguards

    @property
    def waiting(self) -> int:
        """Jobs waiting for the engines (admitted or in line), not counting running ones."""
        lane = self.engine_lane
        return max(0, lane.inside + lane.waiting - self.engines.busy_count)

    def queue_status(self) -> dict[str, int | bool]:
        """The engine queue's figures, for /readyz (`running`: a count with N devices)."""
        busy = self.engines.busy_count
        return {"waiting": self.waiting, "capacity": self.queue_size,
                "running": busy if self.engines.capacity > 1 else bool(busy)}


@dataclass
class Server:
    """One server, as the routes, its lifespan and the CLI reach it."""

    settings: Settings
    metrics: Metrics
    jobs: JobsPath
    async_jobs: AsyncJobs
    shutdown: ShutdownController
    auth: TokenChecker
    uploads: UploadBudget
    #: The probe port's number once the runner has bound it (server/cli/runner.py), else None.
    probe_port: int | None = None

    @property
    def service(self) -> JobService:
        """The job service."""
        return self.jobs.service

    @property
    def engines(self) -> Engines:
        """The engines, local or remote."""
        return self.jobs.engines

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """The server's life: engines load (in the background, so /healthz answers and
        /readyz says 503 meanwhile) → serve → drain → engines stop → close."""
        starting = asyncio.create_task(self.engines.start())
        await self.async_jobs.start()
        yield
        await self.shutdown.wait()  # no new jobs; accepted ones finish within the grace
        await starting
        await self.engines.stop()
        await self.async_jobs.stop()
        await self.service.aclose()
