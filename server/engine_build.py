"""Building the local engines a set of settings asks for: one on --device, or one per
device of --devices, each in a process of its own or in a thread (--device-workers).

torch is imported lazily (through pipelines/), only when an engine is really built.
"""

from __future__ import annotations

import functools
import logging
import os

from pipelines.types import Engine, EngineInfo
from server.settings import Settings

log = logging.getLogger(__name__)

MODEL = "FLUX.1-Kontext-dev"


def build_engine(settings: Settings, device: str | None = None) -> Engine:
    """The engine for these settings on `device` (default: --device); raises WeightsError
    with a pointer to the docs."""
    from pipelines.engine import KontextEngine
    from pipelines.weights import resolve_weights
    from pipelines.weights_check import require_loadable

    options = {"warmup_steps": settings.warmup_steps, "tier": settings.tier,
               "memory_mode": settings.memory_mode,
               "reference_token_budget": settings.reference_token_budget,
               **lora_options(settings)}
    if settings.demo:
        source = resolve_weights(str(ensure_demo_checkpoint(settings)))
        device = device or ("cpu" if settings.device == "auto" else settings.device)
        return KontextEngine(source, device=device, demo=True, **options)
    source = resolve_weights(settings.weights, settings.base_weights)
    # What `kontext weights check` says, before a byte is loaded: a folder that cannot load
    # is refused here in one line, naming every reason.
    require_loadable(source.location, source.base)
    return KontextEngine(source, device=device or settings.device, **options)


def lora_options(settings: Settings) -> dict[str, object]:
    """The engine's LoRA arguments (docs/loras.md): none without a LoRA folder."""
    if settings.lora_dir is None:
        return {}
    if not settings.lora_dir.expanduser().is_dir():  # a typo, or a folder mounted later
        log.warning("the LoRA folder %s does not exist (yet): no LoRAs are listed until it "
                    "does", settings.lora_dir)
    return {"lora_dir": settings.lora_dir, "lora_cache_bytes": settings.lora_cache_bytes,
            "lora_max_rank": settings.lora_max_rank}


def ensure_demo_checkpoint(settings: Settings):
    """The demo checkpoint's folder, written once if it is not there yet."""
    from pipelines.tiny_checkpoint import is_tiny_checkpoint, write_tiny_checkpoint

    if not is_tiny_checkpoint(settings.demo_dir):
        log.info("writing the tiny demo checkpoint to %s", settings.demo_dir)
        write_tiny_checkpoint(settings.demo_dir)
    return settings.demo_dir


def build_local_engines(settings: Settings, factory=None) -> tuple[list[Engine], list[str]]:
    """The engines of --devices (or the one of --device) and their device labels.

    `factory(device) -> Engine` builds one engine (default: `build_engine` under these
    settings); with --device-workers process it runs in each device's child process, so it
    must pickle (a module-level function, or a functools.partial of one).
    """
    from pipelines.devices import device_labels, resolve_devices
    from pipelines.errors import InvalidInput

    if not settings.devices:
        engine = (factory or functools.partial(build_engine, settings))(None)
        return [engine], [engine.info.device]
    devices = resolve_devices(settings.devices)
    labels = device_labels(devices)
    factory = factory or functools.partial(build_engine, settings)
    if settings.demo:
        ensure_demo_checkpoint(settings)  # once, before the children race to write it
    cpu_engines = devices.count("cpu")
    # CPU engines share the cores: each takes its part rather than all of them.
    threads = max(1, (os.cpu_count() or 1) // cpu_engines) if cpu_engines else None
    if settings.device_workers == "thread":
        if any(device.startswith("cuda") for device in devices):
            # The engine code times, measures and compiles on "the current device": one
            # process per GPU (its CUDA_VISIBLE_DEVICES) is the one layout that keeps it so.
            raise InvalidInput("devices: --device-workers thread runs CPU engines only; GPUs "
                               "run in a process each (--device-workers process, the default)")
        if threads:
            from pipelines.devices import limit_cpu_threads

            limit_cpu_threads(threads)  # process-wide: each engine thread runs ops on that many
        return [factory(device) for device in devices], labels
    from pipelines.process_engine import ProcessEngine

    return [ProcessEngine(factory, device, planned_info(settings, device),
                          threads if device == "cpu" else None, lora_dir=settings.lora_dir)
            for device in devices], labels


def planned_info(settings: Settings, device: str) -> EngineInfo:
    """What an engine in a child process will run, for /readyz until the child says."""
    return EngineInfo(model=MODEL + (" (tiny random demo checkpoint)" if settings.demo else ""),
                      device=device, dtype="float32" if device == "cpu" else "bfloat16",
                      demo=settings.demo, tier=settings.tier)
