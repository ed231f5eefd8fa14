"""The local backend: local jobs (dev-kontext, klein) translated to engine requests and run
on the engines, each on the model family its job type names."""

from __future__ import annotations

import asyncio
from typing import Any

from pipelines.contract import (
    KLEIN_4B,
    KLEIN_9B,
    KONTEXT_DEV,
    MODEL_FAMILIES,
    EditRequest,
    EditResult,
    EngineInfo,
    klein_input_size,
)
from pipelines.errors import EngineError
from server.engines.interface import Engines, from_engine_error
from server.errors import ApiError, JobTimeout, NotReady
from server.jobs.admission import Lane
from server.jobs.backends.base import Backend, JobHandle, Outcome
from server.jobs.backends.loras import check_loras, lora_metrics
from server.jobs.prepared import JobSpec, PreparedJob
from server.jobs.types import JobType
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


def klein_request(spec: JobSpec, model: str, images: tuple) -> EditRequest:
    """The engine request for a prepared klein config: every input a reference; an edit
    without a size takes the first input's (as the pipeline feeds it)."""
    config = spec.config
    width, height = spec.size or (1024, 1024)
    if images and spec.size is None:
        first = klein_input_size(*images[0].size)
        width = getattr(config, "width", None) or first[0]
        height = getattr(config, "height", None) or first[1]
    return EditRequest(
        prompt=spec.prompt, image=images[0] if images else None, width=width, height=height,
        steps=config.steps, guidance_scale=1.0, seed=config.seed,  # type: ignore[attr-defined]
        references=images[1:], loras=spec.loras, model=model)


def model_for(job_model: str | None, served: tuple[str, ...]) -> str:
    """The family a job type's model runs on: "klein" (the unversioned names) is klein-4b
    when it is served, else klein-9b when that is; no model: Kontext [dev]."""
    if job_model == "klein":
        return KLEIN_9B if KLEIN_9B in served and KLEIN_4B not in served else KLEIN_4B
    return job_model or KONTEXT_DEV


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

    def model(self, job: PreparedJob) -> str:
        """The model family `job` runs on."""
        return model_for(job.job_type.model, self.engines.info.served())

    def model_label(self, job: PreparedJob) -> str:
        """The model family `job` runs on, for /metrics."""
        return self.model(job)

    def part(self, model: str) -> EngineInfo:
        """What the engines run for family `model` (the engines' info when not split)."""
        return self.engines.info.part(model) or self.engines.info

    def where(self, model: str = KONTEXT_DEV) -> dict[str, Any]:
        """Where its jobs run (job JSON `served_by`): the model and device; with several
        devices, run_edit names the one that ran the job."""
        info = self.part(model)
        return {"backend": "local", "model": info.model, "device": info.device}

    def unavailable(self) -> ApiError | None:
        """NotReady while the engines load, warm up, failed or stop."""
        return self.engines.unavailable()

    def refuses(self, job_type: JobType) -> str | None:
        """Why jobs of `job_type` never run here: its model family is not served."""
        model = model_for(job_type.model, self.engines.info.served())
        served = self.engines.info.served()
        if model in served:
            return None
        return (f"{job_type.name} runs on {model}, which this server does not serve (it "
                f"serves {', '.join(served)}); start it with --models {model} "
                "(KONTEXT_MODELS)")

    async def check(self, job: PreparedJob) -> None:
        """Its model is served here (503 naming --models), and the LoRAs it names exist
        in the folder and load (400 naming the entry)."""
        refusal = self.refuses(job.job_type)
        if refusal is not None:
            raise NotReady(refusal, field="type")
        model = self.model(job)
        if job.spec.loras:  # off the loop: it stats the named files
            await asyncio.to_thread(check_loras, self.engines.loras, job.spec.loras, model)

    def timed_out(self) -> ApiError:
        """504 for a job that ran past job_timeout_seconds."""
        return JobTimeout(f"the job ran past the per-job time limit of {self.time_limit:g} s "
                          "(job_timeout_seconds) and was cancelled")

    async def run(self, job: PreparedJob, handle: JobHandle) -> Outcome:
        """Edit the job's input as its config says."""
        images = tuple(image.image for image in job.inputs)
        model = self.model(job)
        request = klein_request(job.spec, model, images) if model != KONTEXT_DEV else \
            edit_request(job.spec, images[0] if images else None, images[1:])
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
        disclosure = self.marks.disclosure(edited=bool(job.inputs), prompt=request.prompt,
                                           model=MODEL_FAMILIES[request.model].title)
        with job.trace.phase("encode", format=job.output_format):
            data = await asyncio.to_thread(
                self.marks.encode, result.image, job.output_format, disclosure,
                progressive=progressive, jpeg_quality=self.jpeg_quality,
                parent=job.inputs[0].data if job.inputs else None)
        metrics = {"elapsed": round(result.elapsed, 3), "ips": round(result.ips, 3),
                   "tier": self.part(request.model).tier, "model": request.model,
                   **input_metrics(result)}
        if request.loras and result.loras is not None:
            metrics["loras"] = lora_metrics(result.loras)
        return Outcome(data, job.output_format, metrics,
                       served_by={**self.where(request.model), "device": ran.device,
                                  **(served_by or {})},
                       price={"product": job.job_type.name, "dollars": 0},
                       headers=dict(headers or {}))
