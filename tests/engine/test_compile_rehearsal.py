"""The GPU tiers rehearsed on CPU with the real compiler: each tier's exact lever sequence
(the plan the server makes for an H100, moved to the CPU), inductor code generation, on the
tiny-width model at the real depth (19 + 38 blocks, so a per-block recompile would show),
under torch._dynamo.config.error_on_recompile.

The fp8 tiers run torchao's real float8 quantisation (its float8-GPU check bypassed: torch's
CPU _scaled_mm computes the float8 matmuls). Left out, because only a GPU has them: the
FlashAttention 3 / cuDNN attention kernels (native SDPA runs here), CUDA streams, and the
load-time timing that picks the attention backend.

Plain runs (CI) take the representative subset: the fp8 and turbo tiers compiled with
inductor (one family of block graphs: turbo reuses fp8's), against the exact tier run eagerly.
`pytest -m slow tests/engine` adds the exact tier compiled and the full sweep.
"""

from __future__ import annotations

import dataclasses
from unittest import mock

import numpy as np
import pytest
from PIL import Image

from pipelines.contract import EditRequest, RunControl
from pipelines.engine.warmup import ShapeCase
from pipelines.levers.plan import Capabilities, plan_engine

#: Inductor's C++ code generation on 2 shared cores takes minutes (pytest's default is 300 s).
pytestmark = pytest.mark.timeout(1800)

H100 = Capabilities(cuda=True, compute_capability=(9, 0), torchao=True)
TALL, WIDE = Image.new("RGB", (300, 700), (90, 20, 40)), Image.new("RGB", (800, 600), (9, 9, 9))
#: The cheapest geometry (512² output, no reference: 1,024 image tokens) compiles the
#: dynamic graph; everything after it must reuse it.
SMALL = [ShapeCase(512, 512, None, None)]


def rehearsal_engine(deep_tiny_dir, tier: str, compiled: bool = True):
    """The server's H100 plan for `tier`, on CPU: same levers, same order, same dtype."""
    from pipelines.engine.kontext import KontextEngine
    from pipelines.engine.options import EngineOptions
    from pipelines.weights.source import resolve_weights

    plan = plan_engine(tier, "full", "cuda", H100)
    plan = dataclasses.replace(plan, device="cpu", attention_backend="native")
    if not compiled:
        plan = dataclasses.replace(plan, compile=None)
    engine = KontextEngine(resolve_weights(str(deep_tiny_dir)), EngineOptions(
        device="cpu", plan=plan, warmup_steps=1, warmup_size=(512, 512)))
    engine.load()
    return engine


def latents_of(engine, request: EditRequest) -> np.ndarray:
    with mock.patch.object(engine, "_decode", wraps=engine._decode) as decode:
        engine.run(request, RunControl())
    return decode.call_args.args[0].float().numpy()


def edit(width, height, steps, image=None) -> EditRequest:
    return EditRequest("make it red", image, width, height, steps, 2.5, 11)


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.fixture(scope="module")
def compiled():
    """Engines made by a test, reset together at the end (dynamo's caches are global)."""
    import torch

    torch._dynamo.reset()
    made = []
    yield made
    for engine in made:
        engine.close()
    torch._dynamo.reset()


@pytest.mark.slow
def test_exact_tier_compiles_once_and_never_recompiles(deep_tiny_dir, compiled):
    import torch

    engine = rehearsal_engine(deep_tiny_dir, "exact")
    compiled.append(engine)
    assert engine.plan.compile.backend == "inductor" and engine.plan.fuse_qkv
    engine.warmup(SMALL, calibrate=False)
    with torch._dynamo.config.patch(error_on_recompile=True):
        for request in (edit(544, 512, 2), edit(512, 512, 1, TALL)):
            result = engine.run(request, RunControl())
            assert (result.image.size, result.steps) == ((request.width, request.height),
                                                          request.steps)


def test_fp8_and_turbo_tiers_compile_quantised_blocks_and_stay_close_to_exact(
        deep_tiny_dir, compiled, no_fp8_hardware_check):
    import torch
    from helpers.engine_probes import computed_forwards, float8_linears

    from pipelines.levers.quantize import UNFUSED

    exact = rehearsal_engine(deep_tiny_dir, "exact", compiled=False)
    compiled.append(exact)
    fp8 = rehearsal_engine(deep_tiny_dir, "fp8")
    compiled.append(fp8)
    transformer = fp8.pipe.transformer
    assert not {n.rsplit(".", 1)[-1] for n, _ in transformer.named_modules()} & set(UNFUSED)
    fp8_count, linears = float8_linears(transformer)
    assert fp8_count == linears > 57 * 2
    fp8.warmup(SMALL, calibrate=False)
    # Another token count than the warm-up's (1,088 vs 1,024): the dynamic graphs serve it.
    # (Reference images, 5,000+ tokens, cost minutes here: the slow sweep runs them.)
    request = edit(512, 544, 4)
    reference = latents_of(exact, request)
    with torch._dynamo.config.patch(error_on_recompile=True):
        quantised = latents_of(fp8, request)
    # The same blocks (a new engine: new module objects) reuse the fp8 graphs.
    turbo = rehearsal_engine(deep_tiny_dir, "turbo")
    compiled.append(turbo)
    with torch._dynamo.config.patch(error_on_recompile=True):
        cached = latents_of(turbo, request)
    assert computed_forwards(turbo.pipe.transformer) == sum(turbo.plan.step_cache.schedule(4))
    fp8_error, turbo_error = relative_error(quantised, reference), relative_error(cached,
                                                                                  reference)
    print(f"deep tiny model, 512×544, 4 steps, relative L2 error of final latents vs exact "
          f"(inductor, bf16): fp8 {fp8_error:.2e}, turbo {turbo_error:.2e}")
    assert 0 < fp8_error < 0.2 and 0 < turbo_error < 0.3
    assert np.isfinite(cached).all()


SWEEP_SIZES = [(512, 512), (1024, 1024), (512, 1024), (1024, 512), (768, 544), (992, 736)]
SWEEP_REFERENCES = [None, TALL, WIDE, Image.new("RGB", (1024, 1024)),
                    Image.new("RGB", (1920, 640)), Image.new("RGB", (640, 1920))]


@pytest.mark.slow
@pytest.mark.parametrize("tier", ["exact", "fp8", "turbo"])
def test_full_sweep_never_recompiles_after_the_servers_warm_up(deep_tiny_dir, tier, request):
    """The server's own warm-up plan (smallest and largest image-token counts), then every
    output size × reference aspect ratio above and three step counts, per tier."""
    import torch

    if tier != "exact":
        request.getfixturevalue("no_fp8_hardware_check")
    torch._dynamo.reset()
    engine = rehearsal_engine(deep_tiny_dir, tier)
    try:
        engine.warmup()
        with torch._dynamo.config.patch(error_on_recompile=True):
            for index, (width, height) in enumerate(SWEEP_SIZES):
                for offset, image in enumerate(SWEEP_REFERENCES):
                    steps = (1, 2, 5)[(index + offset) % 3]
                    result = engine.run(edit(width, height, steps, image), RunControl())
                    assert result.image.size == (width, height)
    finally:
        engine.close()
        torch._dynamo.reset()
