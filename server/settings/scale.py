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
        1.0, ge=0, description="GPUs each engine replica reserves (0 for CPU engines)."
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

    @model_validator(mode="after")
    def _replica_bounds(self) -> Self:
        if self.ray_min_replicas > self.ray_max_replicas:
            raise ValueError(f"ray_min_replicas ({self.ray_min_replicas}) is above "
                             f"ray_max_replicas ({self.ray_max_replicas})")
        return self
