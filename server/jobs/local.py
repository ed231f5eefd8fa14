"""The local backend: dev-kontext jobs translated to engine requests and run on the worker."""

from __future__ import annotations

import asyncio
from typing import Any

from pipelines.errors import EngineError
from pipelines.types import EditRequest
from server.errors import ApiError, JobTimeout, from_engine_error
from server.jobs.admission import Lane
from server.jobs.backend import JobHandle, Outcome, PreparedJob
from server.jobs.engines import Engines
from server.media.encode import encode_image
from server.wire.models import DevKontextConfig
from server.wire.presets import apply_style

#: Said in every local job's JSON (`notice`) when the engine runs the demo checkpoint.
DEMO_NOTICE = ("demo mode: this server runs a tiny checkpoint with random weights; "
               "its images are noise, not edits")


def edit_request(config: DevKontextConfig, image) -> EditRequest:
    """The engine request for a dev-kontext config: style preset applied to the prompt."""
    return EditRequest(
        prompt=apply_style(config.prompt, config.style_preset), image=image,
        width=config.width, height=config.height, steps=config.steps,
        guidance_scale=config.guidance_scale, seed=config.seed,
    )


class LocalBackend:
    """Runs dev-kontext jobs on the local engine worker, behind the engine lane."""

    runs_on = "local"

    def __init__(self, engines: Engines, lane: Lane, time_limit: float | None,
                 jpeg_quality: int = 92) -> None:
        self.engines = engines
        self.lane: Lane | None = lane
        self.time_limit = time_limit
        self.jpeg_quality = jpeg_quality

    @property
    def notice(self) -> str | None:
        """The demo notice while the engines run the demo checkpoint."""
        return DEMO_NOTICE if self.engines.info.demo else None

    @property
    def label(self) -> str:
        """The engine tier, for /metrics."""
        return self.engines.info.tier

    def unavailable(self) -> ApiError | None:
        """NotReady while the engines load, warm up, failed or stop."""
        return self.engines.unavailable()

    def timed_out(self) -> ApiError:
        """504 for a job that ran past job_timeout_seconds."""
        return JobTimeout(f"the job ran past the per-job time limit of {self.time_limit:g} s "
                          "(job_timeout_seconds) and was cancelled")

    async def run(self, job: PreparedJob, handle: JobHandle) -> Outcome:
        """Edit the job's input as its config says."""
        config: DevKontextConfig = job.config  # type: ignore[assignment]
        request = edit_request(config, job.inputs[0].image if job.inputs else None)
        return await self.run_edit(job, request, handle, config.progressive)

    async def run_edit(self, job: PreparedJob, request: EditRequest, handle: JobHandle,
                       progressive: bool = False, served_by: dict[str, Any] | None = None,
                       headers: dict[str, str] | None = None) -> Outcome:
        """Run one engine request for `job` and encode its output (off the loop)."""
        try:
            ran = await self.engines.run(request, handle.control, handle.started)
        except EngineError as exc:
            raise from_engine_error(exc) from exc
        result = ran.result
        data = await asyncio.to_thread(encode_image, result.image, job.output_format,
                                       progressive, self.jpeg_quality)
        metrics = {"elapsed": round(result.elapsed, 3), "ips": round(result.ips, 3),
                   "tier": self.label, "device": ran.device}
        return Outcome(data, job.output_format, metrics, served_by=served_by,
                       price={"product": job.job_type.name, "dollars": 0},
                       headers=dict(headers or {}))

    async def aclose(self) -> None:
        """Nothing to close: the worker is stopped by the app's lifespan."""
