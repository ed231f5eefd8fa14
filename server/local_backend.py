"""The local backend: dev-kontext jobs translated to engine requests and run on the worker."""

from __future__ import annotations

import asyncio
import logging

from pipelines.errors import Cancelled, EngineError
from pipelines.types import EditRequest, EditResult
from server.accept import ImageFormat
from server.backend import ClientGone, Output, PreparedJob
from server.errors import from_engine_error
from server.images import ImageLimits, decode_input_image, encode_image
from server.settings import Settings
from server.style_presets import apply_style
from server.wire import DevKontextConfig
from server.worker import EngineWorker, WorkItem

log = logging.getLogger(__name__)


def edit_request(config: DevKontextConfig, image) -> EditRequest:
    """The engine request for a dev-kontext config: style preset applied to the prompt."""
    return EditRequest(
        prompt=apply_style(config.prompt, config.style_preset), image=image,
        width=config.width, height=config.height, steps=config.steps,
        guidance_scale=config.guidance_scale, seed=config.seed,
    )


class LocalBackend:
    """Runs dev-kontext jobs on the local engine worker."""

    def __init__(self, worker: EngineWorker, settings: Settings) -> None:
        self.worker = worker
        self.limits = ImageLimits(max_bytes=settings.max_input_bytes)
        self.jpeg_quality = settings.jpeg_quality

    async def run(self, job: PreparedJob, fmt: ImageFormat,
                  client_gone: ClientGone | None) -> Output:
        """Decode the input, queue the edit, await it, encode the output (off the loop)."""
        config: DevKontextConfig = job.config  # type: ignore[assignment]
        image = await asyncio.to_thread(decode_input_image, job.inputs[0], "input", self.limits)
        return await self.run_edit(job, edit_request(config, image), fmt, client_gone,
                                   config.progressive)

    async def run_edit(self, job: PreparedJob, request: EditRequest, fmt: ImageFormat,
                       client_gone: ClientGone | None, progressive: bool = False) -> Output:
        """Queue one engine request for `job`, await it, encode the output (off the loop)."""
        loop = asyncio.get_running_loop()
        item = WorkItem(request, job.control, loop.create_future(), job.record.id)
        self.worker.submit(item)
        job.record.touch("queued")
        result = await _await_result(item, client_gone)
        job.record.touch("processing")
        data = await asyncio.to_thread(encode_image, result.image, fmt, progressive,
                                       self.jpeg_quality)
        job.record.complete({"elapsed": round(result.elapsed, 3), "ips": round(result.ips, 3),
                             "tier": self.worker.engine.info.tier})
        return Output(data, fmt)


async def _await_result(item: WorkItem, client_gone: ClientGone | None) -> EditResult:
    """The engine's result; if the client goes away first, cancel the job and wait for it."""
    watcher = asyncio.ensure_future(client_gone()) if client_gone else None
    try:
        waiters = {item.future} | ({watcher} if watcher else set())
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        if not item.future.done():
            item.control.cancel.set()
            log.info("client disconnected; cancelling job %s", item.job_id)
            # Wait for the worker to stop it, so the GPU is free when we return.
            await asyncio.wait({item.future})
        if item.future.cancelled():
            raise from_engine_error(Cancelled("job cancelled before it started"))
        try:
            return item.future.result()
        except EngineError as exc:
            raise from_engine_error(exc) from exc
    finally:
        if watcher is not None:
            watcher.cancel()
