"""Which devices a server drives: `--devices all | 0,1,3 | cpu,cpu` resolved to device names.

Only resolving `all` needs torch (to count the GPUs); everything else is string work, so
settings can be checked without importing it.
"""

from __future__ import annotations

from collections import Counter

from pipelines.errors import InvalidInput


def pick_device(requested: str) -> str:
    """Resolve "auto" to cuda when available; refuse cuda on a machine without it."""
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise InvalidInput(f"--device {requested} was asked for but no CUDA device is available")
    return requested


def parse_device(item: str) -> str:
    """One `--devices` item as a torch device name: `3` → `cuda:3`, `cuda` → `cuda:0`."""
    item = item.strip().lower()
    if item.isdigit():
        return f"cuda:{int(item)}"
    if item == "cuda":
        return "cuda:0"
    if item == "cpu" or (item.startswith("cuda:") and item[5:].isdigit()):
        return item
    raise InvalidInput(f"devices: {item!r} is not a device; use `all`, GPU indices (0,1,3), "
                       "cuda:N or cpu")


def resolve_devices(items: list[str]) -> list[str]:
    """The device names `items` asks for; `all` is every CUDA device of this machine.

    A GPU named twice is refused (two engines on one GPU compete for its memory and gain
    nothing); `cpu` may repeat, each one an engine of its own.
    """
    if [item.strip().lower() for item in items] == ["all"]:
        return all_cuda_devices()
    if any(item.strip().lower() == "all" for item in items):
        raise InvalidInput("devices: `all` stands alone; do not combine it with other devices")
    devices = [parse_device(item) for item in items]
    twice = sorted(name for name, n in Counter(devices).items() if n > 1 and name != "cpu")
    if twice:
        raise InvalidInput(f"devices: {', '.join(twice)} named more than once; one engine "
                           "per GPU")
    return devices


def all_cuda_devices() -> list[str]:
    """cuda:0 … cuda:N-1; InvalidInput when this machine has no CUDA device."""
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        raise InvalidInput("devices: `all` asks for every GPU, but no CUDA device is available")
    return [f"cuda:{index}" for index in range(count)]


def device_labels(devices: list[str]) -> list[str]:
    """A distinct name per engine for logs, /readyz and /metrics: `cuda:1` as it is, and
    repeated `cpu` engines numbered `cpu:0`, `cpu:1`."""
    counts = Counter(devices)
    seen: Counter[str] = Counter()
    labels = []
    for device in devices:
        if counts[device] > 1:
            labels.append(f"{device}:{seen[device]}")
            seen[device] += 1
        else:
            labels.append(device)
    return labels


def limit_cpu_threads(threads: int) -> None:
    """Let this process's CPU engine use `threads` cores (engines sharing a machine's
    cores each take their part instead of all of them)."""
    import torch

    torch.set_num_threads(max(1, threads))
