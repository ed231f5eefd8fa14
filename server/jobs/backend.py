"""What the service hands a backend (a prepared job and a handle) and what it gets back (an
outcome). Backends never write the job record or the response: the service applies the
outcome once."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from PIL import Image

from pipelines.contract import RunControl
from server.errors import ApiError
from server.jobs.screening import Screening
from server.jobs.types import JobType
from server.media.formats import ImageFormat
from server.wire.models import WireModel

if TYPE_CHECKING:
    from server.jobs.admission import Lane

#: Response header saying where a job ran when it did not run on the local [dev] engine.
SERVED_BY_HEADER = "X-Kontext-Served-By"


@dataclass(frozen=True)
class InputImage:
    """One input image: the bytes as sent, decoded under the contract's rules, its format."""

    data: bytes
    image: Image.Image
    format: ImageFormat


@dataclass(frozen=True)
class PreparedJob:
    """A validated job, ready to run: its id, type, typed config and decoded inputs."""

    id: str
    job_type: JobType
    config: WireModel
    inputs: tuple[InputImage, ...]
    output_format: ImageFormat
    #: Whether the client asked for the price (?price=true).
    price: bool = False
    #: The job's passage through the content filter (a no-op when safety is off).
    screening: Screening = field(default_factory=lambda: Screening(None, "-"))

    @property
    def config_json(self) -> dict[str, Any]:
        """The config as echoed in the job JSON: every default filled in, unset left out."""
        return self.config.model_dump(exclude_none=True)


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


class Backend(Protocol):
    """Runs prepared jobs of the types that name it."""

    #: Admission in front of it (None: it admits everything, e.g. it refuses at once).
    lane: Lane | None
    #: Seconds a job may run once started (None: no limit).
    time_limit: float | None
    #: The tier or upstream label of its jobs in /metrics.
    label: str
    #: A notice added to every job it runs (e.g. demo mode), or None.
    notice: str | None
    #: Where its jobs run (local, local-fallback, upstream-hosted, ...); None: nowhere.
    runs_on: str | None
    #: Whether a job may start before its input check has passed (the local engine: the
    #: input stays here and a refusal stops the job); False: the check passes first (a
    #: forwarded job would send the input away).
    overlaps_input_check: bool

    def unavailable(self) -> ApiError | None:
        """Why it takes no job now (e.g. its engine is still loading), or None."""

    async def check(self, config: WireModel) -> None:
        """Refuse (ApiError) a validated config it cannot run, before the job exists, so
        that an async job is refused at once rather than accepted and then failed."""

    def timed_out(self) -> ApiError:
        """The error a job answers with when it ran past `time_limit`."""

    async def run(self, job: PreparedJob, handle: JobHandle) -> Outcome:
        """Run `job`; raise ApiError on failure. Cancellation arrives as CancelledError."""

    async def aclose(self) -> None:
        """Release what it holds open (e.g. an HTTP client)."""
