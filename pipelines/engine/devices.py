"""The device an engine runs on: picking it, counting GPUs, sharing CPU cores, and freeing
its memory after a failed edit. torch is imported only inside each function."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

from pipelines.errors import Cancelled, EngineFailure, InvalidInput, OutOfMemory


def pick_device(requested: str) -> str:
    """Resolve "auto" to cuda when available; refuse cuda on a machine without it."""
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise InvalidInput(f"--device {requested} was asked for but no CUDA device is available")
    return requested


def cuda_devices() -> list[str]:
    """cuda:0 … cuda:N-1 of this machine (empty without CUDA)."""
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return [f"cuda:{index}" for index in range(count)]


def limit_cpu_threads(threads: int) -> None:
    """Let this process's CPU engine use `threads` cores (engines sharing a machine's
    cores each take their part instead of all of them)."""
    import torch

    torch.set_num_threads(max(1, threads))


def free_memory(device: str) -> None:
    """Collect garbage and return cached device memory (after a failed or closed engine)."""
    import torch

    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()


@contextlib.contextmanager
def engine_failures(device: str) -> Iterator[None]:
    """Whatever a pipeline call raises, as an engine error (OutOfMemory, EngineFailure),
    with the device's memory freed first; Cancelled and InvalidInput pass as they are."""
    import torch

    try:
        yield
    except (Cancelled, InvalidInput):
        raise
    except torch.cuda.OutOfMemoryError as exc:
        free_memory(device)
        raise OutOfMemory(f"out of GPU memory: {exc}") from exc
    except Exception as exc:
        free_memory(device)
        raise EngineFailure(f"{type(exc).__name__}: {exc}") from exc
