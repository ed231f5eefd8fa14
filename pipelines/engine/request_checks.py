"""The checks every family's engine makes of a request before any work: loaded, sizes on the
latent grid, at least one step."""

from __future__ import annotations

from pipelines.contract import EditRequest
from pipelines.errors import EngineFailure, InvalidInput

#: Both families' VAEs downsample by 8 and pack 2×2 latents: sides are multiples of 16.
SIZE_MULTIPLE = 16


def check_request_basics(pipe, request: EditRequest) -> None:
    """EngineFailure when `pipe` is not loaded; InvalidInput naming the rule when the size or
    step count cannot run."""
    if pipe is None:
        raise EngineFailure("engine is not loaded")
    if request.width % SIZE_MULTIPLE or request.height % SIZE_MULTIPLE:
        raise InvalidInput(f"width and height must be multiples of {SIZE_MULTIPLE}")
    if request.steps < 1:
        raise InvalidInput("steps must be at least 1")
