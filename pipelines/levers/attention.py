"""The attention backend of one engine: set explicitly, chosen by measurement, never leaked.

diffusers' `set_attention_backend` does two things: it sets the backend on every attention
processor of the model, and it sets a process-wide "active" backend that processors without
one of their own use. The second is a leak: a pipeline built later in the same process (stock
diffusers in the benchmark, the next engine) would silently inherit this engine's backend.
So every engine sets its backend explicitly, `native` included, and the process-wide value
is put back afterwards.
"""

from __future__ import annotations

import logging
import statistics
from collections.abc import Sequence

log = logging.getLogger(__name__)

NATIVE = "native"
#: The token count timed by `fastest_backend`: 1024² output + a 1 MP reference + 512 text
#: tokens, the server's typical (and largest common) job.
TYPICAL_TOKENS = 8704
#: Another backend replaces the first candidate only when it is at least this much faster,
#: so that timing noise does not flip the choice between restarts.
MIN_GAIN = 0.03


def backend_unavailable(name: str) -> str | None:
    """Why diffusers cannot use backend `name` here (None when it can), from its own checks.

    (E.g. `_flash_3` needs the `flash_attn_3` package: an older FlashAttention 3 build that
    only provides `flash_attn_interface` is refused here rather than inside `load()`.)
    """
    from diffusers.models.attention_dispatch import (
        AttentionBackendName,
        _check_attention_backend_requirements,
    )

    try:
        _check_attention_backend_requirements(AttentionBackendName(name))
    except (RuntimeError, ValueError) as exc:
        return str(exc)
    return None


def set_backend(transformer, name: str) -> str:
    """Set backend `name` on every attention processor of `transformer` and return the one
    set: `native` (logged) when diffusers refuses `name`. The process-wide default is left
    as it was."""
    from diffusers.models.attention_dispatch import _AttentionBackendRegistry

    previous = _AttentionBackendRegistry._active_backend
    try:
        try:
            transformer.set_attention_backend(name)
        except (RuntimeError, ValueError) as exc:
            if name == NATIVE:
                raise
            log.warning("attention backend %s is not usable here (%s); using %s", name, exc,
                        NATIVE)
            name = NATIVE
            transformer.set_attention_backend(NATIVE)
    finally:
        _AttentionBackendRegistry.set_active_backend(previous)
    return name


def time_backends(candidates: Sequence[str], heads: int, head_dim: int, dtype,
                  tokens: int = TYPICAL_TOKENS, repeats: int = 5,
                  device: str = "cuda") -> dict[str, float]:
    """Median seconds of one attention call [1, tokens, heads, head_dim] per usable backend,
    after a warm-up call (CUDA events on a GPU). Backends that fail are left out (logged)."""
    import torch
    from diffusers.models.attention_dispatch import AttentionBackendName, dispatch_attention_fn

    q, k, v = (torch.randn(1, tokens, heads, head_dim, device=device, dtype=dtype)
               for _ in range(3))
    timings = {}
    for name in candidates:
        if (why := backend_unavailable(name)) is not None:
            log.info("attention backend %s skipped: %s", name, why)
            continue
        backend = AttentionBackendName(name)
        try:
            timings[name] = median_seconds(
                lambda backend=backend: dispatch_attention_fn(q, k, v, backend=backend),
                device, repeats)
        except Exception as exc:  # a measurement: any failure just rules the backend out
            log.info("attention backend %s failed at %d tokens: %s", name, tokens, exc)
    return timings


def median_seconds(call, device: str, repeats: int = 5) -> float:
    """Median seconds of `call()` after one warm-up call: CUDA events on a GPU, the host
    clock on CPU."""
    import time

    import torch

    call()
    if device != "cuda":
        spans = []
        for _ in range(repeats):
            started = time.perf_counter()
            call()
            spans.append(time.perf_counter() - started)
        return statistics.median(spans)
    events = []
    for _ in range(repeats):
        start, end = (torch.cuda.Event(enable_timing=True) for _ in range(2))
        start.record()
        call()
        end.record()
        events.append((start, end))
    torch.cuda.synchronize()
    return statistics.median(a.elapsed_time(b) for a, b in events) / 1000


def fastest(timings: dict[str, float], candidates: Sequence[str]) -> str:
    """The first candidate that was timed, unless another is at least MIN_GAIN faster."""
    timed = [name for name in candidates if name in timings]
    if not timed:
        return NATIVE
    best = min(timed, key=timings.__getitem__)
    first = timed[0]
    return best if timings[best] < timings[first] * (1 - MIN_GAIN) else first


def choose_backend(transformer, candidates: Sequence[str], dtype) -> tuple[str, dict]:
    """Time the candidates at this model's head geometry (CUDA) and return (name, timings)."""
    config = transformer.config
    timings = time_backends(candidates, config.num_attention_heads, config.attention_head_dim,
                            dtype)
    choice = fastest(timings, candidates)
    log.info("attention backends at %d tokens (ms): %s → %s", TYPICAL_TOKENS,
             ", ".join(f"{n} {s * 1000:.2f}" for n, s in timings.items()) or "none", choice)
    return choice, timings
