"""The job service: prepare a job from a request, run it on its backend, keep the counts.

Both the synchronous route and the async routes go through here, so a job means the same
thing whichever way it arrives. Backends are looked up by the job type's `backend` name.
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.requests import Request

from server.accept import ImageFormat
from server.backend import ClientGone, JobBackend, Output, PreparedJob
from server.errors import InvalidInputImage, NotReady
from server.job_tracker import JobTracker
from server.job_types import JobType, lookup
from server.jobs import JobRecord
from server.local_backend import LocalBackend
from server.metrics import Metrics
from server.request_body import JsonLimits, read_submission
from server.settings import Settings
from server.upstream import make_upstream_backend
from server.wire import parse_model
from server.worker import EngineWorker

log = logging.getLogger(__name__)

DEMO_NOTICE = ("demo mode: this server runs a tiny checkpoint with random weights; "
               "its images are noise, not edits")


def require_inputs(job_type: JobType, inputs: list[bytes]) -> None:
    """Check the number of distinct input images against what the job type takes."""
    if len(inputs) < job_type.inputs:
        raise InvalidInputImage(
            f"{job_type.name} needs {job_type.inputs} input image, got none; send it as a "
            "multipart part named `input`", field="input")
    if len(inputs) > job_type.inputs:
        raise InvalidInputImage(
            f"{job_type.name} takes {job_type.inputs or 'no'} input image(s), got "
            f"{len(inputs)} distinct ones", field="input")


class JobService:
    """Owns the engine worker and the backends; the routes call prepare() then execute()."""

    def __init__(self, settings: Settings, worker: EngineWorker, demo: bool,
                 metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.worker = worker
        self.demo = demo
        self.accepting = True
        # Every job in flight, timed into the metrics and cancellable at shutdown (issue 6).
        self.tracker = JobTracker(metrics or Metrics())
        self.backends: dict[str, JobBackend] = {"local": LocalBackend(worker, settings)}
        self.backends["upstream"] = make_upstream_backend(settings, worker, demo)

    async def prepare(self, request: Request, record: JobRecord, price: bool) -> PreparedJob:
        """Read, parse and validate a request into a PreparedJob (typed 4xx on failure)."""
        if not self.accepting:
            raise NotReady("the server is shutting down and accepts no new jobs")
        submission = await read_submission(
            request, self.settings.max_body_bytes, self.settings.max_input_parts,
            JsonLimits(self.settings.max_json_bytes, self.settings.max_json_depth))
        job_type = lookup(submission.body.type)
        record.type = job_type.name
        config = parse_model(job_type.config_model, submission.body.config, "config")
        record.config = config.model_dump(exclude_none=True)
        if price:
            record.price = {"product": job_type.name, "dollars": 0}
        if self.demo and job_type.backend == "local":
            record.extra["notice"] = DEMO_NOTICE
        require_inputs(job_type, submission.inputs)
        return PreparedJob(record, job_type, config, submission.inputs)

    async def execute(self, job: PreparedJob, fmt: ImageFormat,
                      client_gone: ClientGone | None = None) -> Output:
        """Run a prepared job on the backend its type names."""
        backend = self.backends.get(job.job_type.backend)
        if backend is None:
            raise NotReady(f"no {job.job_type.backend} backend is configured for "
                           f"{job.job_type.name}")
        job.record.touch("processing")
        local = job.job_type.backend == "local"
        tier = self.worker.engine.info.tier if local else job.job_type.backend
        with self.tracker.track(job, tier):
            return await backend.run(job, fmt, client_gone)

    async def aclose(self) -> None:
        """Close what the backends hold open (the upstream HTTP client)."""
        for backend in self.backends.values():
            close = getattr(backend, "aclose", None)
            if close is not None:
                await close()

    def status(self) -> dict[str, Any]:
        """Queue figures for /readyz."""
        return {"waiting": self.worker.queued, "capacity": self.worker.queue_size,
                "running": self.worker.busy}
