"""What the service hands a backend (a prepared job and a handle), what it gets back (an
outcome), and the Backend base class whose defaults each backend overrides only where it
does something. Backends never write the job record or the response: the service applies
the outcome once."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from server.errors import ApiError, JobTimeout
from server.media.formats import ImageFormat

if TYPE_CHECKING:
    from pipelines.contract import RunControl
    from server.engines.interface import Engines
    from server.jobs.admission import Lane
    from server.jobs.prepared import PreparedJob
    from server.jobs.types import JobType

#: Response header saying where a job ran when it did not run on the local [dev] engine.
SERVED_BY_HEADER = "X-Kontext-Served-By"


@dataclass(frozen=True)
class Outcome:
    """What a finished job produced, for the service to apply to its record and answer."""

    output: bytes
    format: ImageFormat
    metrics: dict[str, Any]
    #: Where the job ran (job JSON `served_by`), when a backend says.
    served_by: dict[str, Any] | None = None
    #: The price to report when the client asked for it; None when unknown.
    price: dict[str, Any] | None = None
    #: Response headers to add (e.g. X-Kontext-Served-By).
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class JobHandle:
    """A backend's view of the service while it runs a job: the job's run control.

    Its events reach the service (`started` when the job leaves the queue and starts
    running, which starts its time limit; each `step`); engines get the control itself.
    Cancellation arrives as asyncio.CancelledError: every backend gets it (the engines
    carry it on as the control's cancel signal).
    """

    control: RunControl

    def started(self, where: str) -> None:
        """The job runs now, on `where`."""
        self.control.started(where)


class Backend:
    """Runs prepared jobs of the types that name it. The defaults describe a backend that
    admits every job at once, runs it with no time limit, nowhere in particular."""

    #: Admission in front of it (None: it admits everything).
    lane: Lane | None = None
    #: The engines its jobs run on, for their queue position and ETA (None: elsewhere).
    engines: Engines | None = None
    #: Seconds a job may run once started (None: no limit).
    time_limit: float | None = None
    #: The tier or upstream label of its jobs in /metrics.
    label: str = "other"
    #: A notice added to every job it runs (e.g. demo mode), or None.
    notice: str | None = None
    #: Where its jobs run (local, local-fallback, upstream-hosted, ...); None: nowhere.
    runs_on: str | None = None
    #: Whether a job may start before its input check has passed (the local engine: the
    #: input stays here and a refusal stops the job); False: the check passes first (a
    #: forwarded job would send the input away).
    overlaps_input_check: bool = False

    def refuses(self, job_type: JobType) -> str | None:
        """Why it runs no job of `job_type` at all (e.g. a model family the engines do
        not serve), or None; the playground offers only the types it runs."""
        return None

    def model_label(self, job: PreparedJob) -> str:
        """The model a job runs on, for /metrics (`upstream` when it runs elsewhere)."""
        return job.job_type.model or "upstream"

    def unavailable(self) -> ApiError | None:
        """Why it takes no job now (e.g. its engine is still loading), asked before
        anything is spent on a job; None: it takes jobs."""
        return None

    async def check(self, job: PreparedJob) -> None:
        """Refuse (ApiError) a prepared job it cannot run, before the job exists (an async
        job is refused at POST, never accepted and then failed); its inputs are read."""

    def timed_out(self) -> ApiError:
        """The error a job answers with when it ran past `time_limit`."""
        return JobTimeout(f"the job ran past its time limit of {self.time_limit:g} s and was "
                          "cancelled")

    async def run(self, job: PreparedJob, handle: JobHandle) -> Outcome:
        """Run `job`; raise ApiError on failure. Cancellation arrives as CancelledError."""
        raise NotImplementedError(f"{type(self).__name__} runs no job")

    async def aclose(self) -> None:
        """Release what it holds open (e.g. an HTTP client)."""
