"""The klein engine on the tiny FLUX.2 [klein] checkpoint: seeds, inputs, cancel, tiers."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from PIL import Image

from pipelines.contract import EditRequest, RunControl
from pipelines.errors import Cancelled, InvalidInput
from pipelines.levers.plan import Capabilities, plan_engine

H100 = Capabilities(cuda=True, compute_capability=(9, 0), torchao=True)
RED, GREEN = Image.new("RGB", (80, 64), (200, 20, 20)), Image.new("RGB", (64, 96), (9, 200, 9))


def klein(width=64, height=64, steps=2, images=(), seed=3) -> EditRequest:
    return EditRequest("a red fox", images[0] if images else None, width, height, steps, 1.0,
                       seed, references=tuple(images[1:]), model="klein-4b")


def test_a_seed_repeats_and_references_shape_the_job(tiny_klein_engine):
    first = tiny_klein_engine.run(klein(96, 64), RunControl())
    again = tiny_klein_engine.run(klein(96, 64), RunControl())
    assert first.image.size == (96, 64) and first.steps == 2
    assert np.array_equal(np.asarray(first.image), np.asarray(again.image))
    edited = tiny_klein_engine.run(klein(64, 64, images=(RED, GREEN)), RunControl())
    assert edited.input_sizes == ((80, 64), (64, 96))
    assert edited.reference_tokens == 20 + 24
    assert not np.array_equal(np.asarray(edited.image.resize((96, 64))),
                              np.asarray(first.image))


def test_steps_are_reported_and_a_cancel_stops_the_job(tiny_klein_engine):
    control = RunControl()
    seen = []

    def emit(event):
        seen.append(event.step)
        if event.step == 1:
            control.cancel.set()

    control.emit = emit
    with pytest.raises(Cancelled):
        tiny_klein_engine.run(klein(steps=4), control)
    assert seen == [1]


def test_inputs_below_the_pipelines_minimum_and_loras_are_refused(tiny_klein_engine):
    from pipelines.contract import LoraChoice

    with pytest.raises(InvalidInput, match=r"input\[1\] is 32x64: klein-4b needs inputs of "
                                           r"at least 64x64"):
        tiny_klein_engine.run(klein(images=(RED, Image.new("RGB", (32, 64)))), RunControl())
    with pytest.raises(InvalidInput, match="takes no LoRAs"):
        tiny_klein_engine.run(dataclasses.replace(klein(), loras=(LoraChoice("x"),)),
                              RunControl())


def klein_engine(tiny_klein_dir, tier: str, **compile_spec):
    """The server's H100 plan for `tier`, moved to the CPU (as the Kontext rehearsal)."""
    from pipelines.engine.klein import KleinEngine
    from pipelines.engine.options import EngineOptions
    from pipelines.weights.source import resolve_weights

    plan = plan_engine(tier, "full", "cuda", H100)
    plan = dataclasses.replace(plan, device="cpu", attention_backend="native")
    if plan.compile is not None:
        plan = dataclasses.replace(plan, compile=dataclasses.replace(plan.compile,
                                                                     **compile_spec))
    return KleinEngine(resolve_weights(str(tiny_klein_dir)), EngineOptions(
        device="cpu", plan=plan, warmup_steps=1, warmup_size=(64, 64)))


def test_turbo_is_refused_with_the_reason(tiny_klein_dir):
    with pytest.raises(InvalidInput, match="--tier turbo is not offered for klein"):
        klein_engine(tiny_klein_dir, "turbo")


def test_the_compiled_tier_never_recompiles_after_warm_up(tiny_klein_dir):
    import torch

    torch._dynamo.reset()
    # dynamo's guards and graph breaks as on the GPU, without the C++ compiler's minutes.
    engine = klein_engine(tiny_klein_dir, "exact", backend="eager")
    assert engine.plan.compile is not None and not engine.plan.fuse_qkv
    engine.load()
    try:
        engine.warmup(calibrate=False)
        with torch._dynamo.config.patch(error_on_recompile=True):
            for request in (klein(96, 64), klein(64, 80, images=(RED, GREEN)),
                            klein(80, 64, images=(GREEN,))):
                result = engine.run(request, RunControl())
                assert result.image.size == (request.width, request.height)
    finally:
        engine.close()
        torch._dynamo.reset()


def test_fp8_linears_hold_on_klein(tiny_klein_dir, no_fp8_hardware_check):
    from helpers.engine_probes import float8_linears

    exact = klein_engine(tiny_klein_dir, "exact", backend="eager")
    fp8 = klein_engine(tiny_klein_dir, "fp8", backend="eager")
    images, counts = [], []
    for engine in (exact, fp8):
        engine.plan = dataclasses.replace(engine.plan, compile=None)  # eager: the weights
        engine.load()
        counts.append(float8_linears(engine.pipe.transformer)[:2])
        images.append(np.asarray(engine.run(klein(64, 64, steps=2), RunControl()).image,
                                 dtype=np.float32))
        engine.close()
    assert counts[0][0] == 0 and counts[1][0] == counts[1][1] > 0
    error = np.linalg.norm(images[1] - images[0]) / np.linalg.norm(images[0])
    assert 0 < error < 0.2
