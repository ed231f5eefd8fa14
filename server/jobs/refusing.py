"""The backend of job types nothing here can run: it validates, then answers 503 naming
the configuration that is missing (a bad job is still a 400 first)."""

from __future__ import annotations

from server.errors import ApiError, NotReady
from server.jobs.backend import JobHandle, Outcome, PreparedJob
from server.wire.models import WireModel


class RefusingBackend:
    """Refuses every job with 503 and `reason`, after the service validated it."""

    lane = None
    time_limit = None
    label = "refused"
    notice = None
    runs_on = None
    overlaps_input_check = False

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def unavailable(self) -> ApiError | None:
        """Never: the refusal comes after validation, from run()."""
        return None

    async def check(self, config: WireModel) -> None:
        """Nothing: the refusal comes from run()."""

    def timed_out(self) -> ApiError:
        """Unused: nothing runs."""
        return NotReady(self.reason)

    async def run(self, job: PreparedJob, handle: JobHandle) -> Outcome:
        """Refuse."""
        raise NotReady(f"{job.job_type.name} cannot run here: {self.reason}")

    async def aclose(self) -> None:
        """Nothing to close."""
