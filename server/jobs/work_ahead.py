"""How long the work ahead on the engines takes: what each running job has left at its own
pace, and every waiting job's steps, shared among the devices as they free up.

The Retry-After of a full engine queue and an async job's ETA come from here, from the jobs
themselves (their steps), not from an average job: three 50-step jobs ahead are three
50-step jobs, whatever ran before them.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping

from server.engines.interface import Engines
from server.engines.worker import TYPICAL_STEPS
from server.jobs.job import Job


def start_time(free_in: list[float], queued: list[float]) -> float:
    """When the next job starts on devices that free up in `free_in` seconds (0: idle),
    after the `queued` jobs (their seconds, in order) each took the first free device."""
    if not free_in:
        return sum(queued)
    times = list(free_in)
    heapq.heapify(times)
    for seconds in queued:
        heapq.heapreplace(times, times[0] + seconds)
    return times[0]


class WorkAhead:
    """The work ahead of a place in the engine lane, from the service's jobs."""

    def __init__(self, engines: Engines, jobs: Mapping[str, Job]) -> None:
        self.engines = engines
        self.jobs = jobs

    def step_seconds(self) -> float:
        """Seconds one denoising step takes on the engines (their own estimate)."""
        return self.engines.step_seconds

    def seconds_left(self, job_id: str) -> float:
        """What `job_id` has left to run: its remaining steps at its own pace once it has
        one (two steps done), else at the engines' step time. A job not known yet (a body
        still being read) counts as a job of TYPICAL_STEPS."""
        job = self.jobs.get(job_id)
        step = self.step_seconds()
        if job is None:
            return TYPICAL_STEPS * step
        progress = job.progress
        steps = progress.steps or TYPICAL_STEPS
        if progress.step >= 2:
            return progress.seconds_left(steps * step)
        return (steps - progress.step) * step

    def _running(self, job_id: str) -> bool:
        job = self.jobs.get(job_id)
        return job is not None and job.record.state == "processing"

    def until_start(self, ahead: list[str], unknown: int = 0) -> float:
        """Seconds until a job starts that has the jobs `ahead` (ids, in order, running ones
        included) and `unknown` not-yet-read ones before it."""
        devices = max(1, self.engines.capacity)
        running = sorted(self.seconds_left(j) for j in ahead if self._running(j))
        free_in = (running + [0.0] * devices)[:devices]
        queued = [self.seconds_left(j) for j in ahead if not self._running(j)]
        return start_time(free_in, queued + [TYPICAL_STEPS * self.step_seconds()] * unknown)

    def eta(self, job_id: str, ahead: list[str]) -> float:
        """Seconds until `job_id` is done: started behind `ahead`, then its own run."""
        if self._running(job_id):
            return self.seconds_left(job_id)
        return self.until_start(ahead) + self.seconds_left(job_id)
