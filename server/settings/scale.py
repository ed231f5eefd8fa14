"""Settings of scale-out: every GPU of a machine (--devices), many machines on Ray Serve."""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import BaseModel, Field, field_validator, model_validator
from pydantic_settings import NoDecode

from server.settings.common import split_commas


def parse_device(item: str) -> str:
    """One `--devices` item as a torch device name: `3` → `cuda:3`, `cuda` → `cuda:0`;
    ValueError saying what is accepted."""
    item = item.strip().lower()
    if item.isdigit():
        return f"cuda:{int(item)}"
    if item == "cuda":
        return "cuda:0"
    if item == "cpu" or (item.startswith("cuda:") and item[5:].isdigit()):
        return item
    raise ValueError(f"devices: {item!r} is not a device; use `all`, GPU indices (0,1,3), "
                     "cuda:N or cpu")


class ScaleSettings(BaseModel):
    """Every GPU of a machine (--devices) and many machines on Ray Serve."""

    devices: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Run one engine per device, all fed from one queue: `all` (every GPU), "
        "GPU indices `0,1,3`, or `cpu,cpu` (two CPU engines). Empty: one engine on --device.",
    )
    device_workers: Literal["process", "thread"] = Field(
        "process",
        description="With --devices: run each device's engine in a process of its own "
        "(a crash or CUDA fault takes down that device only, which is restarted) or in a "
        "thread of the server's process.",
    )
    ready_devices: int | None = Field(
        None, ge=1,
        description="With --devices: how many devices must be ready for /readyz to say "
        "ready and for jobs to be taken. Default: all of them.",
    )
    context_parallel: int | Literal["auto"] = Field(
        1,
        description="Devices per engine: with --devices, each group of this many devices "
        "runs one job at a time with its sequence split across them (lower latency per "
        "edit); 1: every device runs its own job (more jobs at once). The device count must "
        "divide by it. `auto` is refused (docs/scale-out.md says why).",
    )
    context_parallel_mode: Literal["ulysses", "ring"] = Field(
        "ulysses",
        description="How a group splits attention: `ulysses` (an all-to-all of heads; the "
        "head count must divide by the group size) or `ring` (key/value blocks passed "
        "around the group).",
    )
    ray_address: str | None = Field(
        None,
        description="Serve on Ray Serve instead of in this process: `auto` (the Ray cluster "
        "this machine belongs to) or a cluster address. The engine runs in replicas of one "
        "GPU each, autoscaled between --ray-min-replicas and --ray-max-replicas.",
    )
    ray_min_replicas: int = Field(1, ge=1, description="Fewest engine replicas on Ray Serve.")
    ray_max_replicas: int = Field(
        1, ge=1, description="Most engine replicas on Ray Serve (one GPU each); the queue's "
        "bound counts this many running jobs."
    )
    ray_target_ongoing_requests: float = Field(
        1.0, gt=0,
        description="Autoscaling target: jobs per engine replica, running and queued (1: "
        "add a replica as soon as jobs wait).",
    )
    ray_gpus_per_replica: float = Field(
        1.0, ge=0, description="GPUs each engine replica reserves (0 for CPU engines); with "
        "--context-parallel K, K: the replica is one group of K ranks, one GPU each."
    )
    ray_cpus_per_replica: float = Field(
        1.0, gt=0, description="CPUs each engine replica reserves (fractions allowed)."
    )
    ray_ingress_replicas: int = Field(
        1, ge=1, description="Replicas of the HTTP ingress on Ray Serve (CPU only)."
    )
    ray_ingress_cpus: float = Field(
        0.5, gt=0, description="CPUs each ingress replica reserves (fractions allowed)."
    )

    @field_validator("devices", mode="before")
    @classmethod
    def _split_devices(cls, value: object) -> object:
        devices = split_commas(value)
        if isinstance(devices, list):
            for item in devices:
                if item.strip().lower() != "all":
                    parse_device(item)
        return devices

    @field_validator("context_parallel", mode="before")
    @classmethod
    def _parse_group_size(cls, value: object) -> object:
        if isinstance(value, str) and value.strip().lower() == "auto":
            return "auto"
        if isinstance(value, str) and value.strip().isdigit():
            return int(value)
        return value

    @model_validator(mode="after")
    def _groups(self) -> Self:
        if self.ray_address is not None and self.context_parallel != 1:
            refusal = ray_group_refusal(self.context_parallel, self.ray_gpus_per_replica)
        else:
            refusal = group_refusal(self.context_parallel, self.devices, self.device_workers)
        if refusal:
            raise ValueError(refusal)
        return self

    @model_validator(mode="after")
    def _replica_bounds(self) -> Self:
        if self.ray_min_replicas > self.ray_max_replicas:
            raise ValueError(f"ray_min_replicas ({self.ray_min_replicas}) is above "
                             f"ray_max_replicas ({self.ray_max_replicas})")
        return self


#: Why `--context-parallel auto` is refused (docs/scale-out.md, "Why not auto").
AUTO_REFUSAL = (
    "context_parallel: `auto` is not supported: switching devices between their own jobs "
    "and a group's split jobs needs diffusers' split removed and re-added per job (it has "
    "no public way back) or a second transformer, both variants compiled, and a split job "
    "waiting for every device of its group; choose a group size (2, 4, ...) or 1")


def group_refusal(size: int | str, devices: list[str], workers: str) -> str | None:
    """Why devices cannot form groups of `size` (None: they can, or size is 1)."""
    if size == "auto":
        return AUTO_REFUSAL
    assert isinstance(size, int)
    if size < 1:
        return f"context_parallel: must be 1 or more, got {size}"
    if size == 1:
        return None
    if not devices:
        return (f"context_parallel: a group of {size} needs --devices naming its devices "
                f"(e.g. --devices {','.join(str(i) for i in range(size))})")
    if workers != "process":
        return ("context_parallel: a group's ranks run in a process each; use "
                "--device-workers process (the default)")
    if [item.strip().lower() for item in devices] == ["all"]:
        return None  # counted once the GPUs are known (engine_build.resolve_groups)
    return group_size_refusal(size, [parse_device(item) for item in devices])


def group_size_refusal(size: int, devices: list[str]) -> str | None:
    """Why `devices` cannot be cut into groups of `size` (None: they can)."""
    if len(devices) % size:
        return (f"context_parallel: {len(devices)} devices do not divide into groups of "
                f"{size}; name a multiple of {size} devices")
    for start in range(0, len(devices), size):
        kinds = {device.split(":")[0] for device in devices[start:start + size]}
        if len(kinds) > 1:
            return (f"context_parallel: the group {','.join(devices[start:start + size])} "
                    "mixes CPU and GPU; a group is devices of one kind")
    return None


def ray_group_refusal(size: int | str, gpus_per_replica: float) -> str | None:
    """Why a Ray Serve replica cannot be a group of `size` ranks (None: it can): it holds
    `size` GPUs, one per rank (or none: CPU ranks, for rehearsals)."""
    if size == "auto":
        return AUTO_REFUSAL
    assert isinstance(size, int)
    if size < 1:
        return f"context_parallel: must be 1 or more, got {size}"
    if gpus_per_replica not in (0, size):
        return (f"context_parallel: on Ray Serve each replica is one group of {size} ranks, "
                f"one GPU each: use --ray-gpus-per-replica {size} (or 0 for CPU ranks)")
    return None
