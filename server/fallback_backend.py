"""`--fallback local`: [pro]/[max] jobs run on the local [dev] model when no upstream is set.

The job JSON and the X-Kontext-Served-By header say so; prompt_upsampling and
safety_tolerance have no [dev] equivalent and are reported as not applied.
"""

from __future__ import annotations

import asyncio

from pipelines.types import EditRequest
from server.accept import ImageFormat
from server.backend import ClientGone, Output, PreparedJob
from server.images import ImageLimits, decode_input_image
from server.local_backend import LocalBackend
from server.service import DEMO_NOTICE
from server.settings import Settings
from server.upstream_http import SERVED_BY_HEADER
from server.wire import DevKontextConfig
from server.wire_pro import HostedImg2ImgConfig, HostedTxt2ImgConfig, parse_ratio
from server.worker import EngineWorker

SERVED_BY = "local-dev-fallback"
NOT_APPLIED = ["prompt_upsampling", "safety_tolerance"]

#: diffusers' PREFERRED_KONTEXT_RESOLUTIONS (pipelines/flux/pipeline_flux_kontext.py): the
#: ~1 MP (width, height) sizes Kontext was trained at. Copied so that server/ does not
#: import diffusers (and torch) to read 17 pairs.
PREFERRED_RESOLUTIONS = (
    (672, 1568), (688, 1504), (720, 1456), (752, 1392), (800, 1328), (832, 1248),
    (880, 1184), (944, 1104), (1024, 1024), (1104, 944), (1184, 880), (1248, 832),
    (1328, 800), (1392, 752), (1456, 720), (1504, 688), (1568, 672),
)


def nearest_resolution(width: int, height: int) -> tuple[int, int]:
    """The preferred Kontext resolution whose aspect ratio is nearest width:height."""
    ratio = width / height
    return min(PREFERRED_RESOLUTIONS, key=lambda size: abs(size[0] / size[1] - ratio))


class FallbackBackend:
    """Translates a [pro]/[max] config into a [dev] engine request on the local worker."""

    def __init__(self, worker: EngineWorker, settings: Settings, demo: bool) -> None:
        self.local = LocalBackend(worker, settings)
        self.limits = ImageLimits(max_bytes=settings.max_input_bytes)
        self.steps = settings.fallback_steps
        self.guidance = DevKontextConfig.model_fields["guidance_scale"].default
        self.demo = demo

    async def run(self, job: PreparedJob, fmt: ImageFormat,
                  client_gone: ClientGone | None) -> Output:
        """Decode the input (img2img), pick the size, run on [dev], say so."""
        config: HostedTxt2ImgConfig | HostedImg2ImgConfig = job.config  # type: ignore[assignment]
        image = None
        if job.inputs:
            image = await asyncio.to_thread(decode_input_image, job.inputs[0], "input",
                                            self.limits)
        if config.aspect_ratio:
            width, height = nearest_resolution(*parse_ratio(config.aspect_ratio))
        else:
            width, height = nearest_resolution(*image.size) if image else (1024, 1024)
        request = EditRequest(prompt=config.prompt, image=image, width=width, height=height,
                              steps=self.steps, guidance_scale=self.guidance, seed=config.seed)
        job.headers[SERVED_BY_HEADER] = SERVED_BY
        job.record.extra["served_by"] = {
            "backend": SERVED_BY, "model": "FLUX.1-Kontext-dev", "width": width,
            "height": height, "steps": self.steps, "not_applied": NOT_APPLIED,
        }
        if self.demo:
            job.record.extra["notice"] = DEMO_NOTICE
        return await self.local.run_edit(job, request, fmt, client_gone)
