"""The local backend: dev-kontext jobs translated to engine requests and run on the engines."""

from __future__ import annotations

import asyncio
from typing import Any

from pipelines.contract import EditRequest, EditResult
from pipelines.errors import EngineError
from server.engines.interface import Engines, from_engine_error
from server.errors import ApiError, JobTimeout
from server.jobs.admission import Lane
from server.jobs.backends.base import Backend, JobHandle, Outcome
from server.jobs.backends.loras import check_loras, lora_metrics
from server.jobs.prepared import JobSpec, PreparedJob
from server.media.marks import OutputMarks
from server.wire.models import DevKontextConfig

#: Said in every local job's JSON (`notice`) when the engine runs the demo checkpoint.
DEMO_NOTICE = ("demo mode: this server runs a tiny checkpoint with random weights; "
               "its images are noise, not edits")


def edit_request(spec: JobSpec, image, references: tuple = ()) -> EditRequest:
    """The engine request for a prepared dev-kontext config (its style preset applied);
    `image` is input[0], `references` the inputs after it."""
    config: DevKontextConfig = spec.config  # type: ignore[assignment]
    width, height = spec.size or (config.width, config.height)
    return EditRequest(
        prompt=spec.prompt, image=image, width=width, height=height, steps=config.steps,
        guidance_scale=config.guidance_scale, seed=config.seed, references=references,
        reference_method=config.reference_method, loras=spec.loras,
    )


def input_metrics(result: EditResult) -> dict[str, Any]:
    """Each input's size as the engine used it (canvas first) and the tokens they added."""
    if not result.input_sizes:
        return {}
    return {"inputs": [{"width": width, "height": height}
                       for width, height in result.input_sizes],
            "reference_tokens": result.reference_tokens}


class LocalBackend(Backend):
    """Runs dev-kontext jobs on the local engines, behind the engine lane."""

    runs_on = "local"
    overlaps_input_check = True

    def __init__(self, engines: Engines, lane: Lane, time_limit: float | None,
                 jpeg_quality: int = 92, marks: OutputMarks | None = None) -> None:
        self.engines = engines
        self.lane = lane
        self.time_limit = time_limit
        self.jpeg_quality = jpeg_quality
        self.marks = marks or OutputMarks()

    @property
    def notice(self) -> str | None:  # type: ignore[override]
        """The demo notice while the engines run the demo checkpoint."""
        return DEMO_NOTICE if self.engines.info.demo else None

    @property
    def label(self) -> str:  # type: ignore[override]
        """The engine tier, for /metrics."""
        return self.engines.info.tier

    def where(self) -> dict[str, Any]:
        """Where its jobs run (job JSON `served_by`): the engine's model and device; with
        several devices, run_edit names the one that ran the job."""
        info = self.engines.info
        return {"backend": "local", "model": info.model, "device": info.device}

    def unavailable(self) -> ApiError | None:
        """NotReady while the engines load, warm up, failed or stop."""
        return self.engines.unavailable()

    async def check(self, job: PreparedJob) -> None:
        """The LoRAs it names exist in the folder and load (400 naming the entry)."""
        if job.spec.loras:  # off the loop: it stats the named files
            await asyncio.to_thread(check_loras, self.engines.loras, job.spec.loras)

    def timed_out(self) -> ApiError:
        """504 for a job that ran past job_timeout_seconds."""
        return JobTimeout(f"the job ran past the per-job time limit of {self.time_limit:g} s "
                          "(job_timeout_seconds) and was cancelled")

    async def run(self, job: PreparedJob, handle: JobHandle) -> Outcome:
        """Edit the job's input as its config says."""
        images = tuple(image.image for image in job.inputs)
        request = edit_request(job.spec, images[0] if images else None, images[1:])
        return await self.run_edit(job, request, handle,
                                   getattr(job.config, "progressive", False))

    async def run_edit(self, job: PreparedJob, request: EditRequest, handle: JobHandle,
                       progressive: bool = False, served_by: dict[str, Any] | None = None,
                       headers: dict[str, str] | None = None) -> Outcome:
        """Run one engine request for `job`, pass its output through the content filter
        and encode it with the disclosure marks (off the loop).

        `served_by` adds to (or overrides) where() in the job JSON, e.g. the fallback's.
        """
        try:
            ran = await self.engines.run(request, handle.control)
        except EngineError as exc:
            raise from_engine_error(exc) from exc
        finally:
            job.trace.engine_ended()
        result = ran.result
        await job.screening.output(result.image)  # OutputRefused (403) under `block`
        disclosure = self.marks.disclosure(edited=bool(job.inputs), prompt=request.prompt)
        with job.trace.phase("encode", format=job.output_format):
            data = await asyncio.to_thread(
                self.marks.encode, result.image, job.output_format, disclosure,
                progressive=progressive, jpeg_quality=self.jpeg_quality,
                parent=job.inputs[0].data if job.inputs else None)
        metrics = {"elapsed": round(result.elapsed, 3), "ips": round(result.ips, 3),
                   "tier": self.label, **input_metrics(result)}
        if request.loras and result.loras is not None:
            metrics["loras"] = lora_metrics(result.loras)
        return Outcome(data, job.output_format, metrics,
                       served_by={**self.where(), "device": ran.device, **(served_by or {})},
                       price={"product": job.job_type.name, "dollars": 0},
                       headers=dict(headers or {}))
