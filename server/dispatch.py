"""Turning a validated wire job into engine work and back (wire ↔ engine translation)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from pipelines.errors import Cancelled, EngineError
from pipelines.types import EditRequest, EditResult, RunControl
from server.accept import ImageFormat
from server.errors import InvalidInputImage, from_engine_error
from server.images import ImageLimits, decode_input_image, encode_image
from server.job_types import JobType
from server.jobs import JobRecord
from server.style_presets import apply_style
from server.wire import DevKontextConfig
from server.worker import EngineWorker, WorkItem

log = logging.getLogger(__name__)

DEMO_NOTICE = ("demo mode: this server runs a tiny checkpoint with random weights; "
               "its images are noise, not edits")


@dataclass(frozen=True)
class Output:
    """An encoded output image."""

    data: bytes
    format: ImageFormat


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


def edit_request(config: DevKontextConfig, image) -> EditRequest:
    """The engine request for a dev-kontext config: style preset applied to the prompt."""
    return EditRequest(
        prompt=apply_style(config.prompt, config.style_preset), image=image,
        width=config.width, height=config.height, steps=config.steps,
        guidance_scale=config.guidance_scale, seed=config.seed,
    )


async def run_local(
    worker: EngineWorker, record: JobRecord, config: DevKontextConfig, image_data: bytes,
    fmt: ImageFormat, control: RunControl, limits: ImageLimits, jpeg_quality: int,
    client_gone: Callable[[], Awaitable[None]] | None = None,
) -> Output:
    """Run one dev-kontext job on the local engine; fill in the record's metrics."""
    image = await asyncio.to_thread(decode_input_image, image_data, "input", limits)
    loop = asyncio.get_running_loop()
    item = WorkItem(edit_request(config, image), control, loop.create_future(), record.id)
    worker.submit(item)
    record.touch("queued")
    result = await _await_result(item, client_gone)
    data = await asyncio.to_thread(encode_image, result.image, fmt, config.progressive,
                                   jpeg_quality)
    record.complete({"elapsed": round(result.elapsed, 3), "ips": round(result.ips, 3)})
    return Output(data, fmt)


async def _await_result(item: WorkItem, client_gone: Callable[[], Awaitable[None]] | None
                        ) -> EditResult:
    """The engine's result; if the client goes away first, cancel the job."""
    watcher = asyncio.ensure_future(client_gone()) if client_gone else None
    try:
        waiters = {item.future} | ({watcher} if watcher else set())
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        if not item.future.done():
            item.control.cancel.set()
            log.info("client disconnected; job %s cancelled", item.job_id)
            # Wait for the worker to stop the job, so the GPU is free when we return.
            await asyncio.wait({item.future})
        try:
            return item.future.result()
        except asyncio.CancelledError:
            raise from_engine_error(Cancelled("job cancelled before it started")) from None
        except EngineError as exc:
            raise from_engine_error(exc) from exc
    finally:
        if watcher is not None:
            watcher.cancel()
