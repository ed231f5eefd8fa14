"""A job request as a route (or the batch runner) parsed it: nothing of HTTP is left in it."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from server.errors import InvalidInputImage
from server.jobs.backend import InputImage
from server.jobs.types import JobType
from server.media.decode import ImageLimits, decode_input
from server.media.formats import ImageFormat


@dataclass(frozen=True)
class Submission:
    """What a client asked for: a job type, its config as sent, input images, the output
    format it wants and whether it asked for the price; and who asked: the owner its job
    gets (jobs/owners.py) and the client it counts against (jobs/admission.py)."""

    type: str
    config: dict[str, Any] = field(default_factory=dict)
    inputs: tuple[bytes, ...] = ()
    output_format: ImageFormat = "jpeg"
    price: bool = False
    owner: str | None = None
    client: str | None = None


def require_inputs(job_type: JobType, inputs: tuple[bytes, ...]) -> None:
    """Check the number of distinct input images against what the job type takes."""
    low, high = job_type.min_inputs, job_type.max_inputs
    if len(inputs) < low:
        more = f" (up to {high}: the image to edit, then references)" if high > 1 else ""
        raise InvalidInputImage(
            f"{job_type.name} needs {low} input image, got {len(inputs) or 'none'}; send it "
            f"as a multipart part named `input`{more}", field="input")
    if len(inputs) > high:
        ones = "one" if len(inputs) == 1 else "ones"
        raise InvalidInputImage(f"{job_type.name} {_takes(high)}, got {len(inputs)} distinct "
                                f"{ones}", field="input")


def _takes(high: int) -> str:
    """How many images a job type takes at most, in words."""
    if high == 0:
        return "takes no input image"
    if high == 1:
        return "takes 1 input image (only the [dev] job type takes references)"
    return f"takes at most {high} input images (the image to edit and {high - 1} references)"


def _decode_all(inputs: tuple[bytes, ...], limits: ImageLimits) -> tuple[InputImage, ...]:
    decoded = []
    for index, data in enumerate(inputs):
        name = "input" if len(inputs) == 1 else f"input[{index}]"
        image, data, fmt = decode_input(data, name, limits)
        decoded.append(InputImage(data, image, fmt))
    return tuple(decoded)


async def decode_inputs(inputs: tuple[bytes, ...], limits: ImageLimits
                        ) -> tuple[InputImage, ...]:
    """Every input decoded under the image rules, off the event loop (400 naming the input)."""
    if not inputs:
        return ()
    return await asyncio.to_thread(_decode_all, inputs, limits)
