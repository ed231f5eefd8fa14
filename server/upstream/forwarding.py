"""The backend of forwarded [pro]/[max] jobs: a bound on jobs in flight (its own lane, so
they never wait behind GPU jobs), a time limit, and outcome counts; a Forwarder talks to
one upstream API."""

from __future__ import annotations

import time
from typing import Protocol

from server.errors import ApiError, UpstreamTimeout
from server.jobs.admission import Lane
from server.jobs.backend import JobHandle, Outcome, PreparedJob
from server.metrics import Metrics
from server.settings import Settings

#: A guess of one forwarded job's seconds, until one has finished.
FIRST_GUESS_SECONDS = 5.0


class Forwarder(Protocol):
    """Talks to one upstream API."""

    async def forward(self, job: PreparedJob) -> Outcome:
        """Run `job` upstream; raise ApiError on failure."""

    async def aclose(self) -> None:
        """Close the HTTP client."""


class ForwardingBackend:
    """Admits, times and counts forwarded jobs; the Forwarder does the talking."""

    notice = None

    def __init__(self, forwarder: Forwarder, settings: Settings, metrics: Metrics) -> None:
        self.forwarder = forwarder
        self.metrics = metrics
        self.label = settings.upstream
        self.runs_on = f"upstream-{settings.upstream}"
        self.time_limit: float | None = settings.upstream_job_timeout
        # A moving average of real durations: the Retry-After of a full lane.
        self.mean_seconds = FIRST_GUESS_SECONDS
        size = settings.upstream_max_in_flight
        self.lane: Lane | None = Lane(
            "upstream", size, lambda: self.mean_seconds,
            f"{size} forwarded jobs are in flight already; retry later")

    def unavailable(self) -> ApiError | None:
        """Always available: upstream's own answers say otherwise."""
        return None

    def timed_out(self) -> ApiError:
        """504 for a forwarded job that ran past upstream_job_timeout."""
        return UpstreamTimeout(f"the forwarded job took longer than {self.time_limit:g} s "
                               "in all")

    async def run(self, job: PreparedJob, handle: JobHandle) -> Outcome:
        """Forward the job now (it has its place) and count how upstream answered."""
        handle.started()
        started = time.monotonic()
        try:
            outcome = await self.forwarder.forward(job)
        except ApiError as exc:
            self.metrics.count_upstream(self.label, exc.reason)
            raise
        self.metrics.count_upstream(self.label, "ok")
        self.mean_seconds = 0.7 * self.mean_seconds + 0.3 * (time.monotonic() - started)
        return outcome

    async def aclose(self) -> None:
        """Close the forwarder's HTTP client."""
        await self.forwarder.aclose()
