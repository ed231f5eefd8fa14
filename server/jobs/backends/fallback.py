"""`--fallback local`: [pro]/[max] jobs run on the local [dev] model when no upstream is set.

The job JSON (`served_by`) and the X-Kontext-Served-By header say so; prompt_upsampling has
no [dev] equivalent and is reported as not applied. safety_tolerance is honoured by the
content filter when one is active (jobs/screening.py: TOLERANCE_THRESHOLDS), and reported
as not applied when safety is off.
"""

from __future__ import annotations

from pipelines.contract import KONTEXT_DEV, EditRequest, nearest_preferred
from server.errors import ApiError, NotReady
from server.jobs.backends.base import SERVED_BY_HEADER, Backend, JobHandle, Outcome
from server.jobs.backends.local import LocalBackend
from server.jobs.prepared import PreparedJob
from server.jobs.types import JobType
from server.wire.models import DevKontextConfig

SERVED_BY = "local-dev-fallback"


class FallbackBackend(Backend):
    """Translates a [pro]/[max] config into a [dev] engine request on the local engines."""

    runs_on = "local-fallback"
    overlaps_input_check = True

    def __init__(self, local: LocalBackend, steps: int) -> None:
        self.local = local
        self.lane = local.lane  # the same engines, so the same line
        self.engines = local.engines
        self.time_limit = local.time_limit
        self.steps = steps
        self.guidance = DevKontextConfig.model_fields["guidance_scale"].default

    @property
    def notice(self) -> str | None:  # type: ignore[override]
        """The local engines' notice (demo mode)."""
        return self.local.notice

    @property
    def label(self) -> str:  # type: ignore[override]
        """The engine tier, for /metrics."""
        return self.local.label

    def model_label(self, job: PreparedJob) -> str:
        """[pro]/[max] on the local fallback run on Kontext [dev]."""
        return KONTEXT_DEV

    def unavailable(self) -> ApiError | None:
        """NotReady while the engines are not ready."""
        return self.local.unavailable()

    def refuses(self, job_type: JobType) -> str | None:
        """Why [pro]/[max] cannot fall back here: Kontext [dev] is not served."""
        served = self.engines.info.served()
        if KONTEXT_DEV in served:
            return None
        return (f"{job_type.name} falls back to kontext-dev, which this server does not serve "
                f"(it serves {', '.join(served)}); add kontext-dev to --models "
                "(KONTEXT_MODELS)")

    async def check(self, job: PreparedJob) -> None:
        """503 when Kontext [dev] is not among the served models (it runs the fallback)."""
        refusal = self.refuses(job.job_type)
        if refusal is not None:
            raise NotReady(refusal, field="type")

    def timed_out(self) -> ApiError:
        """The local engine's time-limit error."""
        return self.local.timed_out()

    async def run(self, job: PreparedJob, handle: JobHandle) -> Outcome:
        """Pick the size, run on [dev], say so."""
        image = job.inputs[0].image if job.inputs else None
        width, height = job.spec.size or \
            (nearest_preferred(*image.size) if image else (1024, 1024))
        request = EditRequest(prompt=job.spec.prompt, image=image, width=width, height=height,
                              steps=self.steps, guidance_scale=self.guidance,
                              seed=job.config.seed)  # type: ignore[attr-defined]
        # The model is the local engine's own (where(): the demo checkpoint says it is one).
        served_by = {"backend": SERVED_BY, "width": width, "height": height,
                     "steps": self.steps, "not_applied": not_applied(job.screening.active)}
        return await self.local.run_edit(job, request, handle, served_by=served_by,
                                         headers={SERVED_BY_HEADER: SERVED_BY})


def not_applied(filtered: bool) -> list[str]:
    """The [pro]/[max] fields a fallback job does not honour: safety_tolerance is honoured
    only by an active content filter."""
    return ["prompt_upsampling"] if filtered else ["prompt_upsampling", "safety_tolerance"]
