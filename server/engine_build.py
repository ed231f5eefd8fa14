"""Building the local engines a set of settings asks for: one on --device, or one per
device of --devices, each in a process of its own or in a thread (--device-workers), or one
per K devices of --devices with --context-parallel K (a group: K processes, one edit split
across them, refused at startup when the devices, the model or the tier cannot form it).

torch is imported lazily (through pipelines/), only when an engine is really built.
"""

from __future__ import annotations

import functools
import logging
import os
from collections import Counter

from pipelines.contract import ALL_MODELS, KONTEXT_DEV, MODEL_FAMILIES, EngineInfo
from pipelines.errors import InvalidInput, WeightsError
from server.engines.group import GroupEngine
from server.engines.interface import Engine
from server.engines.pool import device_labels
from server.settings import Settings
from server.settings.scale import group_size_refusal, parse_device

log = logging.getLogger(__name__)


def build_engine(settings: Settings, device: str | None = None, group=None) -> Engine:
    """The engine for these settings on `device` (default: --device): one model family's,
    or a ModelSetEngine of every family --models names, alone or (`group`, a
    pipelines.parallel ContextParallel) one rank of a group; raises WeightsError with a
    pointer to the docs."""
    names = served_models(settings)
    options = engine_options(settings, device, group)
    engines = {name: family_engine(settings, name, options) for name in names}
    if len(engines) == 1:
        return engines[names[0]]
    from pipelines.engine.models import ModelSetEngine

    return ModelSetEngine(engines)


def family_engine(settings: Settings, name: str, options) -> Engine:
    """The engine of one family: its weights resolved and checked before a byte loads."""
    from pipelines.weights.check import require_loadable
    from pipelines.weights.source import resolve_weights

    if settings.demo:
        source = resolve_weights(str(ensure_demo_checkpoint(settings, name)))
    else:
        source = resolve_weights(weights_for(settings, name),
                                 settings.base_weights if name == KONTEXT_DEV else None)
        # What `kontext weights check` says, before a byte is loaded: a folder that cannot
        # load is refused here in one line, naming every reason.
        require_loadable(source.location, source.base, model=name)
    if name == KONTEXT_DEV:
        from pipelines.engine.kontext import KontextEngine

        return KontextEngine(source, options)
    from pipelines.engine.klein import KleinEngine

    return KleinEngine(source, options, name)


def weights_for(settings: Settings, name: str) -> str | None:
    """Where family `name`'s weights are (--weights for Kontext, else --model-weights)."""
    given = dict(item.split("=", 1) for item in settings.model_weights)
    if name == KONTEXT_DEV:
        return given.get(name) or settings.weights
    return given.get(name)


def served_models(settings: Settings) -> list[str]:
    """The families --models asks for, `all` resolved, each with its weights (or the
    demo); WeightsError in one line naming the flag and variable of what is missing."""
    names: list[str] = []
    for name in settings.models:
        if name == ALL_MODELS:
            names += [family for family in MODEL_FAMILIES
                      if settings.demo or weights_for(settings, family)]
        else:
            names.append(name)
    names = list(dict.fromkeys(names))  # each once, in the order given
    if not names:
        raise WeightsError("--models all (KONTEXT_MODELS): no family has weights; give "
                           "--weights (KONTEXT_WEIGHTS) or --model-weights family=location "
                           "(KONTEXT_MODEL_WEIGHTS), or run with --demo")
    if not settings.demo:
        missing = [name for name in names if not weights_for(settings, name)]
        if missing:
            flags = ["--weights (KONTEXT_WEIGHTS)" if name == KONTEXT_DEV else
                     f"--model-weights {name}=LOCATION (KONTEXT_MODEL_WEIGHTS)"
                     for name in missing]
            raise WeightsError(f"--models (KONTEXT_MODELS) names {', '.join(missing)} without "
                               f"weights: give {'; '.join(flags)}. See weights/README.md, "
                               "or run with --demo")
    return names


def build_rank_engine(settings: Settings, device: str, rank: int, init_method: str) -> Engine:
    """Rank `rank` of a group under these settings (what each group process builds)."""
    from pipelines.parallel.options import ContextParallel

    assert isinstance(settings.context_parallel, int)
    group = ContextParallel(settings.context_parallel, settings.context_parallel_mode, rank,
                            init_method)
    return build_engine(settings, device, group)


def engine_options(settings: Settings, device: str | None = None, group=None):
    """The engine's options under these settings, on `device` (default: --device; the demo
    runs on CPU unless a device is named); `group`: the rank it is in a group."""
    from pipelines.engine.options import EngineOptions, LoraOptions

    if device is None:
        device = "cpu" if settings.demo and settings.device == "auto" else settings.device
    loras = None
    if settings.lora_dir is not None:
        if not settings.lora_dir.expanduser().is_dir():  # a typo, or a folder mounted later
            log.warning("the LoRA folder %s does not exist (yet): no LoRAs are listed until "
                        "it does", settings.lora_dir)
        loras = LoraOptions(settings.lora_dir, cache_bytes=settings.lora_cache_bytes,
                            max_rank=settings.lora_max_rank)
    return EngineOptions(device=device, demo=settings.demo, tier=settings.tier,
                         memory_mode=settings.memory_mode, max_autotune=settings.max_autotune,
                         warmup_steps=settings.warmup_steps,
                         reference_token_budget=settings.reference_token_budget, loras=loras,
                         context_parallel=group)


def share_cpu(threads: int) -> None:
    """Let this process's CPU engines use `threads` cores (engines sharing a machine each
    take their part instead of all of them); process-wide."""
    from pipelines.engine.devices import limit_cpu_threads

    limit_cpu_threads(threads)


def ensure_demo_checkpoint(settings: Settings, name: str = KONTEXT_DEV):
    """Family `name`'s demo checkpoint folder, written once if it is not there yet (klein's
    beside Kontext's; both klein sizes share one tiny checkpoint)."""
    from pipelines.weights.tiny import is_tiny_checkpoint, write_tiny_checkpoint

    folder, write = settings.demo_dir, write_tiny_checkpoint
    if name != KONTEXT_DEV:
        from pipelines.weights.tiny_klein import write_tiny_klein_checkpoint

        folder = settings.demo_dir.with_name(settings.demo_dir.name + "-klein")
        write = write_tiny_klein_checkpoint
    if not is_tiny_checkpoint(folder):
        log.info("writing the tiny %s demo checkpoint to %s", name, folder)
        write(folder)
    return folder


def resolve_devices(items: list[str]) -> list[str]:
    """The device names `items` asks for; `all` is every CUDA device of this machine.

    A GPU named twice is refused (two engines on one GPU compete for its memory and gain
    nothing); `cpu` may repeat, each one an engine of its own.
    """
    if [item.strip().lower() for item in items] == ["all"]:
        from pipelines.engine.devices import cuda_devices

        devices = cuda_devices()
        if not devices:
            raise InvalidInput("devices: `all` asks for every GPU, but no CUDA device is "
                               "available")
        return devices
    if any(item.strip().lower() == "all" for item in items):
        raise InvalidInput("devices: `all` stands alone; do not combine it with other devices")
    try:
        devices = [parse_device(item) for item in items]
    except ValueError as exc:
        raise InvalidInput(str(exc)) from exc
    twice = sorted(name for name, n in Counter(devices).items() if n > 1 and name != "cpu")
    if twice:
        raise InvalidInput(f"devices: {', '.join(twice)} named more than once; one engine "
                           "per GPU")
    return devices


def build_local_engines(settings: Settings, factory=None) -> tuple[list[Engine], list[str]]:
    """The engines of --devices (or the one of --device) and their device labels.

    `factory(device) -> Engine` builds one engine (default: `build_engine` under these
    settings); with --device-workers process it runs in each device's child process, so it
    must pickle (a module-level function, or a functools.partial of one).
    """
    if not settings.devices:
        engine = (factory or functools.partial(build_engine, settings))(None)
        return [engine], [engine.info.device]
    if settings.context_parallel != 1:
        return build_groups(settings, factory)
    devices = resolve_devices(settings.devices)
    labels = device_labels(devices)
    factory = factory or functools.partial(build_engine, settings)
    names = served_models(settings)  # refused here, before any child starts
    if settings.demo:
        for name in names:  # once, before the children race to write them
            ensure_demo_checkpoint(settings, name)
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
            share_cpu(threads)  # process-wide: each engine thread runs ops on that many
        return [factory(device) for device in devices], labels
    from server.engines.child import ProcessEngine

    return [ProcessEngine(functools.partial(sharing_cpu, factory, threads)
                          if threads and device == "cpu" else factory,
                          device, planned_info(settings, device), lora_folder(settings))
            for device in devices], labels


def sharing_cpu(factory, threads: int, device: str, **kwargs) -> Engine:
    """`factory(device, **kwargs)` in a process whose CPU engine takes `threads` cores (a
    child's)."""
    share_cpu(threads)
    return factory(device, **kwargs)


def lora_folder(settings: Settings):
    """The LoRA folder as a catalog scanned in this process (None without one): what the
    server lists while an engine in a child process is busy."""
    if settings.lora_dir is None:
        return None
    from pipelines.loras.library import LoraLibrary

    return LoraLibrary(settings.lora_dir)


def planned_info(settings: Settings, device: str) -> EngineInfo:
    """What an engine in a child process (or a Ray replica) will run, for /readyz until it
    says: each family --models serves."""
    demo = " (tiny random demo checkpoint)" if settings.demo else ""
    parts = tuple(EngineInfo(model=MODEL_FAMILIES[name].model + demo, device=device,
                             dtype="float32" if device == "cpu" else "bfloat16",
                             demo=settings.demo, tier=settings.tier, family=name)
                  for name in served_models(settings))
    if len(parts) == 1:
        return parts[0]
    return EngineInfo(model=" + ".join(part.model for part in parts), device=device,
                      dtype=parts[0].dtype, demo=settings.demo, tier=settings.tier,
                      family=parts[0].family, models=parts)


def build_groups(settings: Settings, factory=None) -> tuple[list[Engine], list[str]]:
    """One GroupEngine per K devices of --devices, and their labels (`cpu:0,cpu:1`).

    `factory(device, rank=, init_method=) -> Engine` builds one rank in its process
    (default: build_rank_engine under these settings); it must pickle.
    """
    size = settings.context_parallel
    assert isinstance(size, int)
    devices = resolve_devices(settings.devices)
    check_groups(settings, devices)
    labels = device_labels(devices)
    factory = factory or functools.partial(build_rank_engine, settings)
    cpu_ranks = devices.count("cpu")
    # Every rank of every CPU group shares the cores: each takes its part.
    threads = max(1, (os.cpu_count() or 1) // cpu_ranks) if cpu_ranks else None
    if threads:
        factory = functools.partial(sharing_cpu, factory, threads)
    engines, names = [], []
    for start in range(0, len(devices), size):
        group = devices[start:start + size]
        name = ",".join(labels[start:start + size])
        engines.append(GroupEngine(factory, group, name, planned_info(settings, name),
                                   lora_folder(settings)))
        names.append(name)
    return engines, names


def check_groups(settings: Settings, devices: list[str]) -> None:
    """InvalidInput, said at startup, when `devices` cannot form the settings' groups: the
    count or kinds of devices, the model's head count (Ulysses), the tier or memory mode."""
    from pipelines.parallel.check import check_group, check_tier, transformer_heads

    size = settings.context_parallel
    assert isinstance(size, int)
    refusal = group_size_refusal(size, devices)
    if refusal:
        raise InvalidInput(refusal)
    check_tier(settings.tier, settings.memory_mode)
    others = [name for name in served_models(settings) if name != KONTEXT_DEV]
    if others:
        raise InvalidInput(f"--context-parallel (KONTEXT_CONTEXT_PARALLEL) splits kontext-dev "
                           f"only, and --models (KONTEXT_MODELS) also names {', '.join(others)}"
                           ": serve those on a server without --context-parallel")
    folder = ensure_demo_checkpoint(settings) if settings.demo else settings.weights
    check_group(size, settings.context_parallel_mode, transformer_heads(folder), devices[0])


def build_replica_group(settings: Settings, factory=None) -> Engine:
    """The group one Ray Serve replica runs with --context-parallel K: its K GPUs (the
    ones Ray gave it, cuda:0 … cuda:K-1 as it sees them), or K CPU ranks with
    --ray-gpus-per-replica 0."""
    size = settings.context_parallel
    assert isinstance(size, int)
    devices = ["cpu"] * size if settings.ray_gpus_per_replica == 0 else \
        [f"cuda:{index}" for index in range(size)]
    engines, _labels = build_groups(settings.model_copy(update={"devices": devices}), factory)
    return engines[0]
