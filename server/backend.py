"""What every job backend shares: the prepared job it is given and the output it returns."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from pipelines.types import RunControl
from server.accept import ImageFormat
from server.job_types import JobType
from server.jobs import JobRecord
from server.wire import WireModel

#: Resolves when the client that asked for a job has gone away.
ClientGone = Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class Output:
    """An encoded output image."""

    data: bytes
    format: ImageFormat


@dataclass
class PreparedJob:
    """A validated job, ready to run: its record, config and input images."""

    record: JobRecord
    job_type: JobType
    config: WireModel
    inputs: list[bytes]
    control: RunControl = field(default_factory=RunControl)
    #: Response headers a backend wants set (e.g. where a job was served).
    headers: dict[str, str] = field(default_factory=dict)


class JobBackend(Protocol):
    """Runs a prepared job and returns its encoded output image."""

    async def run(self, job: PreparedJob, fmt: ImageFormat,
                  client_gone: ClientGone | None) -> Output:
        """Run `job`, filling in job.record's metrics; raise ApiError on failure."""
