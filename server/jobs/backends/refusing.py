"""The backend of job types nothing here can run: it refuses them with 503 naming the
configuration that is missing, once they are prepared (a bad job is still a 400 first) and
before they exist, for synchronous and async jobs alike."""

from __future__ import annotations

from server.errors import NotReady
from server.jobs.backends.base import Backend
from server.jobs.prepared import PreparedJob


class RefusingBackend(Backend):
    """Refuses every job with 503 and `reason`."""

    label = "refused"

    def __init__(self, reason: str) -> None:
        self.reason = reason

    async def check(self, job: PreparedJob) -> None:
        """Refuse: nothing here runs this job type."""
        raise NotReady(f"{job.job_type.name} cannot run here: {self.reason}")
