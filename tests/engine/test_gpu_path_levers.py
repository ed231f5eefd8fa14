"""The GPU path's levers, each run for real on CPU where a CPU can show it: explicit and
non-leaking attention backends with a logged fallback, fused QKV without the unfused
weights, torchao float8 without global inductor settings, the no_grad fallback, and the
steady-state step times."""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pytest

from pipelines.contract import EditRequest, RunControl
from pipelines.levers.plan import EnginePlan

CPU_PLAN = EnginePlan(tier="exact", memory_mode="full", device="cpu", dtype="float32",
                      attention_backend="native")


def engine_with(tiny_dir, plan: EnginePlan, **kwargs):
    from pipelines.engine.kontext import KontextEngine
    from pipelines.engine.options import EngineOptions
    from pipelines.weights.source import resolve_weights

    engine = KontextEngine(resolve_weights(str(tiny_dir)), EngineOptions(
        device="cpu", plan=plan, warmup_size=(512, 512), **kwargs))
    engine.load()
    return engine


def edit(steps=3, seed=4) -> EditRequest:
    return EditRequest("make it red", None, 512, 512, steps, 2.5, seed)


def active_backend():
    from diffusers.models.attention_dispatch import _AttentionBackendRegistry

    return _AttentionBackendRegistry._active_backend


def test_every_engine_sets_its_backend_and_none_leaks_into_the_next(tiny_dir):
    from diffusers import FluxKontextPipeline
    from helpers.engine_probes import backends_in_use

    before = active_backend()
    math = engine_with(tiny_dir, dataclasses.replace(CPU_PLAN, attention_backend="_native_math"))
    assert backends_in_use(math.pipe.transformer) == {"_native_math"}
    assert math.info.extra["attention"] == "_native_math"
    assert active_backend() == before  # the process-wide default was put back
    native = engine_with(tiny_dir, CPU_PLAN)
    assert backends_in_use(native.pipe.transformer) == {"native"}  # set, not inherited
    stock = FluxKontextPipeline.from_pretrained(str(tiny_dir))
    assert backends_in_use(stock.transformer) == {None}  # diffusers' default, untouched
    assert backends_in_use(math.pipe.transformer) == {"_native_math"}


def test_flash_attention_3_missing_falls_back_to_native_with_a_log(tiny_dir, caplog):
    """diffusers' _flash_3 needs the `flash_attn_3` package; without it, set_attention_backend
    raises inside load(). The engine asks diffusers' own check and falls back."""
    from pipelines.levers.attention import backend_unavailable

    if backend_unavailable("_flash_3") is None:
        pytest.skip("FlashAttention 3 is installed here")
    assert "Flash Attention 3" in backend_unavailable("_flash_3")
    with caplog.at_level(logging.WARNING, logger="pipelines.levers.attention"):
        engine = engine_with(tiny_dir, dataclasses.replace(CPU_PLAN, attention_backend="_flash_3"))
    assert engine.info.extra["attention"] == "native"
    assert "_flash_3 is not usable here" in caplog.text
    assert engine.run(edit(1), RunControl()).steps == 1


def test_fastest_backend_keeps_the_first_unless_another_is_clearly_faster():
    from pipelines.levers.attention import fastest

    candidates = ("_flash_3", "_native_cudnn", "_native_flash")
    assert fastest({"_flash_3": 1.00, "_native_cudnn": 0.99}, candidates) == "_flash_3"
    assert fastest({"_flash_3": 1.00, "_native_cudnn": 0.90}, candidates) == "_native_cudnn"
    assert fastest({"_native_flash": 2.0}, candidates) == "_native_flash"
    assert fastest({}, candidates) == "native"


def test_fused_qkv_drops_the_unfused_projections_and_keeps_the_output(tiny_engine):
    import torch

    from pipelines.levers.attention import set_backend
    from pipelines.levers.quantize import UNFUSED, fuse_qkv
    from pipelines.weights.tiny import build_tiny_pipeline

    transformer = build_tiny_pipeline().transformer.eval()
    set_backend(transformer, "native")
    inputs = _transformer_inputs(transformer)
    with torch.no_grad():
        before = transformer(**inputs)[0]
        params = sum(p.numel() for p in transformer.parameters())
        assert fuse_qkv(transformer) == 3 * 2 + 3  # double block: 6, single block: 3
        after = transformer(**inputs)[0]
    names = {name.rsplit(".", 1)[-1] for name, _ in transformer.named_modules()}
    assert not names & set(UNFUSED) and {"to_qkv", "to_added_qkv"} <= names
    # same parameter count as before: the fused copies replaced the originals
    assert sum(p.numel() for p in transformer.parameters()) == params
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-5)


def _transformer_inputs(transformer, tokens: int = 64, dtype=None) -> dict:
    import torch

    config = transformer.config
    dtype = dtype or transformer.dtype
    generator = torch.Generator().manual_seed(0)

    def randn(*shape):
        return torch.randn(*shape, generator=generator).to(dtype)

    return {"hidden_states": randn(1, tokens, config.in_channels),
            "encoder_hidden_states": randn(1, 8, config.joint_attention_dim),
            "pooled_projections": randn(1, config.pooled_projection_dim),
            "timestep": torch.tensor([0.5]), "guidance": torch.tensor([2.5]),
            "img_ids": torch.zeros(tokens, 3), "txt_ids": torch.zeros(8, 3),
            "return_dict": False}


def test_fp8_quantisation_covers_the_fused_linears_and_leaves_inductor_alone(
        no_fp8_hardware_check):
    import torch
    from helpers.engine_probes import float8_linears

    from pipelines.levers.quantize import fuse_qkv, quantize_fp8_linears
    from pipelines.weights.tiny import build_tiny_pipeline

    inductor = torch._inductor.config
    before = {name: getattr(inductor, name) for name in
              ("coordinate_descent_tuning", "coordinate_descent_check_all_directions",
               "force_fuse_int_mm_with_mul")}
    transformer = build_tiny_pipeline().transformer.eval().to(torch.bfloat16)
    fuse_qkv(transformer)
    quantize_fp8_linears(transformer, "cpu")
    fp8, linears = float8_linears(transformer)
    # every linear whose sides are multiples of 16 (torchao's rule): all of the tiny model's
    assert fp8 == linears > 0
    assert {name: getattr(inductor, name) for name in before} == before
    with torch.no_grad():
        out = transformer(**_transformer_inputs(transformer))[0]
    assert torch.isfinite(out).all()


def test_no_grad_fallback_gives_the_same_edit_and_is_taken_on_the_real_error(
        tiny_dir, no_fp8_hardware_check):
    """The fp8 weights are tensor subclasses made outside inference_mode; whichever mode the
    engine ends in, an edit under no_grad must equal one under inference_mode."""
    import torch
    from torch.testing._internal.two_tensor import TwoTensor

    from pipelines.engine.grad_mode import is_inference_mode_failure

    plan = dataclasses.replace(CPU_PLAN, tier="fp8", dtype="bfloat16", fp8_linears=True,
                               fuse_qkv=True)
    engine = engine_with(tiny_dir, plan)
    first = engine.run(edit(2), RunControl())
    engine.grad_mode = "no_grad"
    assert engine.run(edit(2), RunControl()).image.tobytes() == first.image.tobytes()
    # The error inference_mode raises for a subclass made outside it (the float8 weights'
    # bug history), produced for real with torch's own test subclass:
    weight = TwoTensor(torch.randn(2, 3), torch.randn(2, 3))
    with torch.inference_mode(), pytest.raises(RuntimeError) as info:
        weight.t()
    assert is_inference_mode_failure(info.value, "inference_mode")
    assert not is_inference_mode_failure(info.value, "no_grad")
    assert not is_inference_mode_failure(RuntimeError("shape mismatch"), "inference_mode")


def test_steady_step_time_excludes_warm_up_and_first_steps(tiny_dir):
    engine = engine_with(tiny_dir, CPU_PLAN, warmup_steps=1)
    assert engine.steady_step_seconds() is None
    engine.warmup()
    seeded = engine.steady_step_seconds()
    assert seeded is not None and seeded > 0
    result = engine.run(edit(4), RunControl())
    assert result.steps == 4 and 0 < result.step_seconds <= result.denoise_seconds
    assert engine.steady_step_seconds() == pytest.approx(0.7 * seeded + 0.3 * result.step_seconds)


def test_steady_seconds_drops_the_first_step():
    from pipelines.engine.step_timer import steady_seconds

    assert steady_seconds([9.0, 1.0, 3.0]) == 2.0
    assert steady_seconds([5.0]) == 5.0
    assert steady_seconds([]) == 0.0


def test_step_cache_deviation_from_exact_is_small_and_reported(tiny_dir, tiny_engine):
    """Turbo's cache alone on CPU (the tiny random model; not a quality figure)."""
    from pipelines.levers.plan import StepCacheSpec

    turbo = engine_with(tiny_dir, dataclasses.replace(CPU_PLAN, tier="turbo",
                                                      step_cache=StepCacheSpec()))
    request = EditRequest("make it red", None, 512, 512, 12, 2.5, 4)
    cached = np.asarray(turbo.run(request, RunControl()).image, dtype=np.float64)
    exact = np.asarray(tiny_engine.run(request, RunControl()).image, dtype=np.float64)
    mse = float(np.mean((cached - exact) ** 2))
    psnr = 10 * np.log10(255**2 / mse) if mse else float("inf")
    print(f"step cache vs exact, tiny model, 512², 12 steps: image PSNR {psnr:.1f} dB")
    assert mse > 0 and psnr > 25
