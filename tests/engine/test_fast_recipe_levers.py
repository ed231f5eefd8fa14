"""The fastest published recipes' levers, rehearsed on CPU: CUDA graphs of whole forwards
(the policy, and a stand-in with a replayed graph's buffer semantics), fp8 attention (its
quantisation, emulated: FA3 is CUDA-only), max-autotune (one real inductor compile), and
the step cache's float32 sigmas."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from pipelines.contract import EditRequest, RunControl
from pipelines.levers.plan import (
    MAX_AUTOTUNE,
    Capabilities,
    CompileSpec,
    CudaGraphSpec,
    EnginePlan,
    StepCacheSpec,
    plan_engine,
)

H100 = Capabilities(cuda=True, compute_capability=(9, 0), torchao=True, flash_attn_3=True)
H100_NO_FA3 = dataclasses.replace(H100, flash_attn_3=False)
CPU_PLAN = EnginePlan(tier="exact", memory_mode="full", device="cpu", dtype="float32",
                      attention_backend="native")


def engine_with(tiny_dir, plan: EnginePlan, warmup_size=(512, 512)):
    from pipelines.engine.kontext import KontextEngine
    from pipelines.engine.options import EngineOptions
    from pipelines.weights.source import resolve_weights

    engine = KontextEngine(resolve_weights(str(tiny_dir)), EngineOptions(
        device="cpu", plan=plan, warmup_steps=1, warmup_size=warmup_size))
    engine.load()
    return engine


def edit(width=512, height=512, steps=3, seed=5) -> EditRequest:
    return EditRequest("make it red", None, width, height, steps, 2.5, seed)


def test_the_plan_records_graphs_autotunes_on_request_and_says_when_fp8_attention_is_off():
    exact = plan_engine("exact", "full", "cuda", H100)
    assert exact.cuda_graphs == CudaGraphSpec() and exact.compile.mode is None
    assert not exact.fp8_attention  # lossless tier: bf16 attention
    tuned = plan_engine("exact", "full", "cuda", H100, max_autotune=True)
    assert tuned.compile.mode == MAX_AUTOTUNE and "mode=max-autotune" in " ".join(tuned.levers())
    assert plan_engine("exact", "24gb", "cuda", H100, max_autotune=True).compile is None
    # capped memory: no graph pools
    assert plan_engine("fp8", "24gb", "cuda", H100).cuda_graphs is None
    fp8 = plan_engine("fp8", "full", "cuda", H100)
    assert fp8.fp8_attention and "fp8_attention(FA3)" in fp8.levers()
    without = plan_engine("turbo", "full", "cuda", H100_NO_FA3)
    assert not without.fp8_attention
    assert any("fp8 attention is off: it needs FlashAttention 3" in n for n in without.notes)


def test_loras_turn_cuda_graphs_off_with_a_note(tmp_path):
    from pipelines.loras.manager import LoraManager

    plan = LoraManager(tmp_path, 2**20, 8, 1).adjust_plan(plan_engine("exact", "full", "cuda",
                                                                       H100))
    assert plan.cuda_graphs is None and any("CUDA graphs are off" in n for n in plan.notes)


def test_graph_policy_records_the_calibration_geometry_then_second_jobs_up_to_the_cap(
        tiny_dir, tiny_engine):
    """The stand-in replays by re-running into the recorded buffers: the same results as
    no graph, and the outputs are overwritten by the next replay, as a CUDA graph's are."""
    from pipelines.levers.cuda_graphs import _hook, recorded_graphs

    spec = CudaGraphSpec(max_graphs=2, max_image_tokens=6000)
    engine = engine_with(tiny_dir, dataclasses.replace(CPU_PLAN, cuda_graphs=spec))
    engine.warmup()
    transformer = engine.pipe.transformer
    # 512² with its reference snapped to 1024² (_auto_resize): 1,024 + 4,096 tokens
    assert recorded_graphs(transformer) == 1
    once = engine.run(edit(544, 512), RunControl())
    assert recorded_graphs(transformer) == 1  # a geometry's first job: no graph yet
    twice = engine.run(edit(544, 512), RunControl())
    assert recorded_graphs(transformer) == 2 and twice.image.tobytes() == once.image.tobytes()
    engine.run(edit(576, 512), RunControl())
    engine.run(edit(576, 512), RunControl())
    assert recorded_graphs(transformer) == 2  # the cap
    graph = list(_hook(transformer).graphs.values())[1]  # 544×512's, 1,088 tokens
    buffer = graph.outputs[0]
    before = buffer.clone()
    replayed = engine.run(edit(544, 512, seed=9), RunControl())
    assert graph.outputs[0] is buffer and not buffer.equal(before)  # refilled in place
    assert replayed.image.tobytes() == tiny_engine.run(edit(544, 512, seed=9),
                                                       RunControl()).image.tobytes()


def test_graphs_under_the_step_cache_give_the_step_caches_result(tiny_dir):
    """The cache keeps computed outputs across steps: it must copy them out of the graph's
    buffers, or the next replay would change what it extrapolates from."""
    cached = dataclasses.replace(CPU_PLAN, tier="turbo", step_cache=StepCacheSpec())
    graphed = dataclasses.replace(cached, cuda_graphs=CudaGraphSpec(max_image_tokens=2048))
    plain, with_graphs = engine_with(tiny_dir, cached), engine_with(tiny_dir, graphed)
    with_graphs.warmup()
    request = edit(512, 512, steps=10)
    with_graphs.run(request, RunControl())  # second job of the geometry: recorded
    assert with_graphs.run(request, RunControl()).image.tobytes() == \
        plain.run(request, RunControl()).image.tobytes()


def test_the_step_cache_extrapolates_in_the_schedulers_float32_sigmas(tiny_dir):
    """Not the bf16 `timestep` the pipeline passes (bf16 rounds neighbouring sigmas)."""
    from unittest import mock

    import torch

    from pipelines.levers import step_cache

    plan = dataclasses.replace(CPU_PLAN, tier="turbo", dtype="bfloat16",
                               step_cache=StepCacheSpec())
    engine = engine_with(tiny_dir, plan)
    with mock.patch.object(step_cache, "_extrapolate", wraps=step_cache._extrapolate) as spy:
        engine.run(edit(256, 256, steps=8), RunControl())
    sigmas = engine.pipe.scheduler.sigmas
    predicted = [i for i, runs in enumerate(step_cache.current_schedule(
        engine.pipe.transformer)) if not runs]
    assert sigmas.dtype == torch.float32 and len(spy.call_args_list) == len(predicted) > 0
    for step, call in zip(predicted, spy.call_args_list, strict=True):
        points, sigma = call.args
        assert sigma.dtype == torch.float32 and sigma.item() == sigmas[step].item()
        assert all(t.dtype == torch.float32 for t, _ in points)
    assert any(sigmas[i].item() != sigmas[i].to(torch.bfloat16).item() for i in predicted)


def test_fp8_attention_quantises_per_head_and_stays_close_to_bf16(tiny_dir, tiny_engine):
    import torch

    from pipelines.levers.attention_fp8 import fp8_attention, quantize_heads

    generator = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 64, 2, 16, generator=generator) for _ in range(3))
    loud = q.clone()
    loud[:, :, 1] *= 50  # a loud head keeps its own scale
    q8, scale = quantize_heads(loud)
    assert q8.dtype == torch.float8_e4m3fn and scale.shape == (1, 2)
    assert scale[0, 1] > 20 * scale[0, 0]
    exact = torch.nn.functional.scaled_dot_product_attention(
        *(t.transpose(1, 2) for t in (q, k, v))).transpose(1, 2)
    error = (fp8_attention(q, k, v) - exact).norm() / exact.norm()
    assert 0 < error < 0.1
    engine = engine_with(tiny_dir, dataclasses.replace(CPU_PLAN, fp8_attention=True))
    kinds = {type(m.processor).__name__ for m in engine.pipe.transformer.modules()
             if hasattr(m, "processor")}
    assert kinds == {"Fp8FluxAttnProcessor"}
    assert "fp8" in engine.info.extra["attention"]
    ours = np.asarray(engine.run(edit(), RunControl()).image, dtype=np.float64)
    exact_image = np.asarray(tiny_engine.run(edit(), RunControl()).image, dtype=np.float64)
    mse = float(np.mean((ours - exact_image) ** 2))
    assert mse > 0 and 10 * np.log10(255**2 / mse) > 25


@pytest.mark.timeout(1800)
def test_max_autotune_compiles_the_blocks_once_for_every_size(tiny_dir):
    """One real inductor compile with the max-autotune mode (CPU: C++ GEMM templates
    benchmarked), then another size without recompiling."""
    import torch

    plan = dataclasses.replace(CPU_PLAN, dtype="float32",
                               compile=CompileSpec(mode=MAX_AUTOTUNE))
    torch._dynamo.reset()
    try:
        engine = engine_with(tiny_dir, plan)
        engine.run(edit(512, 512, steps=1), RunControl())
        with torch._dynamo.config.patch(error_on_recompile=True):
            assert engine.run(edit(544, 512, steps=1), RunControl()).image.size == (544, 512)
    finally:
        torch._dynamo.reset()
