"""The backend of forwarded [pro]/[max] jobs: a bound on jobs in flight (its own lane, so
they never wait behind GPU jobs), a time limit, and outcome counts; a Forwarder talks to
one upstream API.

Forwarded jobs pass the same content filter as local ones (docs/safety.md): the prompt and
the inputs before anything is sent (the service waits for the input check), the output
before it is returned. Their outputs get the disclosure marks naming the upstream model,
unless upstream signed its own C2PA manifest into them (kept intact: media/marks.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import time
from typing import Protocol

from PIL import Image

from pipelines.contract import MovingAverage
from server.errors import ApiError, UpstreamTimeout
from server.jobs.admission import Lane
from server.jobs.backends.base import Backend, JobHandle, Outcome
from server.jobs.prepared import PreparedJob
from server.media.marks import OutputMarks
from server.metrics import Metrics
from server.settings import Settings
from server.wire.hosted import hosted_kind

#: A guess of one forwarded job's seconds, until one has finished.
FIRST_GUESS_SECONDS = 5.0


class Forwarder(Protocol):
    """Talks to one upstream API."""

    async def forward(self, job: PreparedJob) -> Outcome:
        """Run `job` upstream; raise ApiError on failure."""

    async def aclose(self) -> None:
        """Close the HTTP client."""


class ForwardingBackend(Backend):
    """Admits, times and counts forwarded jobs; the Forwarder does the talking. The input
    check passes before a job starts (overlaps_input_check is False): it would send the
    input away."""

    def __init__(self, forwarder: Forwarder, settings: Settings, metrics: Metrics,
                 marks: OutputMarks | None = None) -> None:
        self.forwarder = forwarder
        self.metrics = metrics
        self.marks = marks or OutputMarks()
        self.label = settings.upstream
        self.runs_on = f"upstream-{settings.upstream}"
        self.time_limit: float | None = settings.upstream_job_timeout
        # A moving average of real durations: the Retry-After of a full lane.
        self.job_seconds = MovingAverage(FIRST_GUESS_SECONDS)
        size = settings.upstream_max_in_flight
        self.lane = Lane(
            "upstream", size, lambda: self.job_seconds.value or FIRST_GUESS_SECONDS,
            f"{size} forwarded jobs are in flight already; retry later",
            share=settings.client_share)

    def timed_out(self) -> ApiError:
        """504 for a forwarded job that ran past upstream_job_timeout."""
        return UpstreamTimeout(f"the forwarded job took longer than {self.time_limit:g} s "
                               "in all")

    async def run(self, job: PreparedJob, handle: JobHandle) -> Outcome:
        """Forward the job now (it has its place) and count how upstream answered."""
        handle.started(self.runs_on)
        started = time.monotonic()
        try:
            with job.trace.phase("upstream", upstream=self.label):
                outcome = await self.forwarder.forward(job)
        except ApiError as exc:
            self.metrics.count_upstream(self.label, exc.reason)
            raise
        self.metrics.count_upstream(self.label, "ok")
        self.job_seconds.add(time.monotonic() - started)
        return await self._screened_and_marked(job, outcome)

    async def _screened_and_marked(self, job: PreparedJob, outcome: Outcome) -> Outcome:
        """The output checkpoint (OutputRefused under `block`), then the marks."""
        if job.screening.active:
            image = await asyncio.to_thread(_decoded, outcome.output)
            await job.screening.output(image)
        model = f"FLUX.1 Kontext [{hosted_kind(job.job_type.name).model}]"
        disclosure = self.marks.disclosure(edited=bool(job.inputs),
                                           prompt=job.spec.prompt, model=model)
        data = await asyncio.to_thread(self.marks.mark, outcome.output, disclosure,
                                       job.inputs[0].data if job.inputs else None)
        return dataclasses.replace(outcome, output=data)

    async def aclose(self) -> None:
        """Close the forwarder's HTTP client."""
        await self.forwarder.aclose()


def _decoded(data: bytes) -> Image.Image:
    """An upstream output (already checked readable by the forwarder) as RGB pixels."""
    with Image.open(io.BytesIO(data)) as image:
        return image.convert("RGB")
