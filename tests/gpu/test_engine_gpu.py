"""Every tier and memory mode on a real CUDA device (tiny checkpoint). Skipped without CUDA.

Speed is not asserted here (benchmarks/ measures it); these prove each code path runs,
keeps the exact output size, stays seeded, times its steps with CUDA events, and does not
recompile across API sizes on a model of the real depth (19 + 38 blocks).
"""

from __future__ import annotations

import dataclasses

import pytest
from PIL import Image

from pipelines.contract import EditRequest, RunControl
from pipelines.errors import InvalidInput
from pipelines.levers.plan import detect_capabilities, plan_engine

pytestmark = pytest.mark.gpu

REFERENCE = Image.linear_gradient("L").resize((800, 600)).convert("RGB")


def gpu_engine(checkpoint, tier: str, memory_mode: str = "full"):
    from pipelines.engine.kontext import KontextEngine
    from pipelines.engine.options import EngineOptions
    from pipelines.weights.source import resolve_weights

    caps = detect_capabilities()
    try:
        plan = plan_engine(tier, memory_mode, "cuda", caps)
    except InvalidInput as exc:  # e.g. fp8 on a GPU without float8 tensor cores
        pytest.skip(f"{tier}/{memory_mode} unavailable here: {exc}")
    # The tiny model's 16-wide heads are no FlashAttention 3 head size: the load-time timing
    # ("auto") rules out the backends that fail on them.
    plan = dataclasses.replace(plan, attention_candidates=tuple(
        name for name in plan.attention_candidates if name != "_flash_3"))
    engine = KontextEngine(resolve_weights(str(checkpoint)), EngineOptions(
        device="cuda", plan=plan, warmup_steps=1))
    engine.load()
    return engine


def edit(width=512, height=512, seed=1, steps=4, image=REFERENCE) -> EditRequest:
    return EditRequest("make it red", image, width, height, steps, 2.5, seed)


@pytest.mark.parametrize(("tier", "memory_mode"), [
    ("exact", "full"), ("fp8", "full"), ("turbo", "full"),
    ("exact", "24gb"), ("fp8", "24gb"), ("exact", "16gb"),
])
def test_tier_runs_seeded_at_the_exact_size(tiny_dir, tier, memory_mode):
    engine = gpu_engine(tiny_dir, tier, memory_mode)
    try:
        engine.warmup()
        assert engine.steady_step_seconds() > 0  # CUDA events of the calibration edit
        first = engine.run(edit(768, 544), RunControl())
        again = engine.run(edit(768, 544), RunControl())
        assert first.image.size == (768, 544)
        assert first.image.tobytes() == again.image.tobytes()
        assert 0 < first.step_seconds <= first.denoise_seconds
    finally:
        engine.close()


@pytest.mark.parametrize("tier", ["exact", "fp8", "turbo"])
def test_compiled_tier_at_real_depth_does_not_recompile_across_api_sizes(deep_tiny_dir, tier):
    import torch

    torch._dynamo.reset()
    engine = gpu_engine(deep_tiny_dir, tier)
    assert engine.plan.compile is not None
    try:
        engine.warmup()
        with torch._dynamo.config.patch(error_on_recompile=True):
            for width, height in [(512, 544), (1024, 768), (640, 1024), (1024, 1024)]:
                assert engine.run(edit(width, height, steps=2), RunControl()).image.size == \
                    (width, height)
            engine.run(edit(576, 832, steps=5, image=Image.new("RGB", (300, 700))),
                       RunControl())
    finally:
        engine.close()
        torch._dynamo.reset()
