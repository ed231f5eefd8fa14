"""Which device an engine runs on."""

from __future__ import annotations

from pipelines.errors import InvalidInput


def pick_device(requested: str) -> str:
    """Resolve "auto" to cuda when available; refuse "cuda" on a machine without it."""
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise InvalidInput("--device cuda was asked for but no CUDA device is available")
    return requested
