"""Engine tiers and memory modes: the lever plan for every combination, clear errors for
unavailable levers, the compiled-shape set, and the CPU-runnable lever code paths."""

from __future__ import annotations

import dataclasses
import itertools

import pytest
from helpers.engine_probes import lossless

from pipelines.contract import EditRequest, RunControl
from pipelines.errors import InvalidInput
from pipelines.levers.plan import (
    MEMORY_MODES,
    TIERS,
    Capabilities,
    CompileSpec,
    EnginePlan,
    StepCacheSpec,
    plan_engine,
)

H100 = Capabilities(cuda=True, compute_capability=(9, 0), torchao=True, flash_attn_3=True)
H100_NO_FA3 = dataclasses.replace(H100, flash_attn_3=False)
L4 = Capabilities(cuda=True, compute_capability=(8, 9), torchao=True)
A100 = Capabilities(cuda=True, compute_capability=(8, 0), torchao=True)
NO_TORCHAO = dataclasses.replace(H100, torchao=False)
CPU = Capabilities()
MACHINES = {"h100": H100, "h100_no_fa3": H100_NO_FA3, "l4": L4, "a100": A100,
            "no_torchao": NO_TORCHAO, "cpu": CPU}


@pytest.mark.parametrize(("tier", "memory_mode", "device", "machine"), list(itertools.product(
    TIERS, MEMORY_MODES, ("cuda", "cpu"), MACHINES)))
def test_every_combination_plans_consistently_or_refuses_clearly(tier, memory_mode, device,
                                                                 machine):
    caps = MACHINES[machine]
    try:
        plan = plan_engine(tier, memory_mode, device, caps)
    except InvalidInput as exc:
        message = str(exc)
        assert len(message) > 40 and ("--tier" in message or "--memory-mode" in message
                                      or "CUDA" in message)
        refused_because = (device == "cpu" and (tier != "exact" or memory_mode != "full")) \
            or (device == "cuda" and not caps.cuda) \
            or (device == "cuda" and tier != "exact" and (not caps.fp8 or memory_mode == "16gb"))
        assert refused_because, message
        return
    assert (plan.tier, plan.memory_mode, plan.device) == (tier, memory_mode, device)
    assert lossless(plan) == (tier == "exact" and memory_mode == "full")
    assert plan.fp8_linears == (tier != "exact")
    assert (plan.step_cache is not None) == (tier == "turbo")
    if plan.compile is not None:
        # dynamo cannot trace weight-moving hooks; graph breaks only for the step cache
        assert plan.transformer_offload == "none" and not plan.fp8_weight_storage
        # the step cache wraps the whole transformer: the blocks stay one graph each
        assert plan.compile.dynamic and plan.compile.fullgraph
    if device == "cpu":
        assert plan.levers() == [] and plan.dtype == "float32"
    else:
        assert plan.dtype == "bfloat16"
        assert (plan.text_encoder_offload == "none") == (memory_mode == "full")


def test_exact_tier_on_an_h100_uses_every_lossless_lever():
    plan = plan_engine("exact", "full", "cuda", H100)
    # "auto": the fastest of the candidates, timed at load (pipelines/levers/attention.py)
    assert plan.attention_backend == "auto" and plan.fuse_qkv
    assert plan.attention_candidates == ("_flash_3", "_native_cudnn", "_native_flash",
                                         "_native_efficient")
    assert plan.compile == CompileSpec(fullgraph=True, dynamic=True)
    assert not plan.fp8_linears and plan.step_cache is None and lossless(plan)
    no_fa3 = plan_engine("exact", "full", "cuda", H100_NO_FA3)
    assert no_fa3.attention_candidates[0] == "_native_cudnn"
    assert "_flash_3" not in plan_engine("exact", "full", "cuda", L4).attention_candidates


def test_turbo_tier_adds_a_whole_forward_step_cache_and_keeps_fullgraph():
    plan = plan_engine("turbo", "full", "cuda", H100)
    assert plan.fp8_linears and plan.step_cache == StepCacheSpec()
    assert plan.compile is not None and plan.compile.fullgraph
    assert any(lever.startswith("step_cache(whole forward, exact=25%")
               for lever in plan.levers())
    # the cache holds output-sized factors only: turbo runs at 24gb too
    assert plan_engine("turbo", "24gb", "cuda", H100).step_cache == StepCacheSpec()


def test_memory_modes_trade_exactness_and_compile_for_memory():
    exact_24 = plan_engine("exact", "24gb", "cuda", H100)
    assert exact_24.fp8_weight_storage and exact_24.text_encoder_offload == "group_streamed"
    assert exact_24.compile is None and not lossless(exact_24)
    assert any("no longer bit-exact" in note for note in exact_24.notes)
    fp8_24 = plan_engine("fp8", "24gb", "cuda", H100)
    assert fp8_24.fp8_linears and not fp8_24.fp8_weight_storage and fp8_24.compile
    exact_16 = plan_engine("exact", "16gb", "cuda", H100)
    assert exact_16.transformer_offload == "group_streamed" and exact_16.compile is None


@pytest.mark.parametrize(("tier", "memory_mode", "device", "caps", "says"), [
    ("fp8", "full", "cpu", CPU, "--tier fp8 needs a CUDA GPU"),
    ("turbo", "full", "cpu", CPU, "Use --tier exact on cpu"),
    ("exact", "24gb", "cpu", CPU, "--memory-mode 24gb limits GPU memory and needs a CUDA"),
    ("exact", "full", "cuda", CPU, "no CUDA device is available"),
    ("fp8", "full", "cuda", NO_TORCHAO, "pip install -e '.[gpu]'"),
    ("fp8", "full", "cuda", A100, "this GPU is 8.0"),
    ("turbo", "16gb", "cuda", H100, "--memory-mode 16gb is not supported"),
])
def test_unavailable_levers_fail_with_a_message_naming_the_way_out(tier, memory_mode, device,
                                                                    caps, says):
    with pytest.raises(InvalidInput) as info:
        plan_engine(tier, memory_mode, device, caps)
    assert says in str(info.value)


@pytest.mark.parametrize(("steps", "exact"), [(1, 1), (2, 1), (4, 1), (8, 2), (28, 7),
                                              (30, 8), (50, 13)])
def test_turbo_keeps_the_first_quarter_of_steps_exact(steps, exact):
    assert StepCacheSpec().exact_steps(steps) == exact
    schedule = StepCacheSpec().schedule(steps)
    assert all(schedule[:exact]) and len(schedule) == steps


def test_turbo_computes_half_the_forwards_of_a_30_step_job():
    schedule = StepCacheSpec().schedule(30)
    computed = [step for step, runs in enumerate(schedule) if runs]
    assert computed == [0, 1, 2, 3, 4, 5, 6, 7, 10, 13, 16, 19, 22, 25, 28]


def test_fp8_tier_on_a_cpu_machine_fails_at_engine_construction(tiny_dir):
    from pipelines.engine.kontext import KontextEngine
    from pipelines.engine.options import EngineOptions
    from pipelines.weights.source import resolve_weights

    with pytest.raises(InvalidInput, match="--tier fp8 needs a CUDA GPU"):
        KontextEngine(resolve_weights(str(tiny_dir)), EngineOptions(device="cpu", tier="fp8"))


def _engine_with(tiny_dir, plan: EnginePlan):
    from pipelines.engine.kontext import KontextEngine
    from pipelines.engine.options import EngineOptions
    from pipelines.weights.source import resolve_weights

    engine = KontextEngine(resolve_weights(str(tiny_dir)), EngineOptions(
        device="cpu", demo=True, plan=plan, warmup_steps=1, warmup_size=(512, 512)))
    engine.load()
    return engine


def _request(width=512, height=512, steps=8, image=None) -> EditRequest:
    return EditRequest(prompt="make it red", image=image, width=width, height=height,
                       steps=steps, guidance_scale=2.5, seed=4)


def test_step_cache_runs_the_schedule_and_skips_whole_forwards(tiny_dir, tiny_engine):
    """The turbo lever's code path on CPU (hand-built plan: the fp8 part is rehearsed in
    test_compile_rehearsal.py)."""
    from helpers.engine_probes import computed_forwards

    plan = EnginePlan(tier="turbo", memory_mode="full", device="cpu", dtype="float32",
                      attention_backend="native", step_cache=StepCacheSpec())
    engine = _engine_with(tiny_dir, plan)
    blocks = []
    engine.pipe.transformer.transformer_blocks[0].register_forward_hook(
        lambda *_: blocks.append(1))
    cached = engine.run(_request(steps=8), RunControl())
    # 8 steps: 2 exact (0, 1), then forwards at steps 4 and 7 only; no block runs otherwise
    assert len(blocks) == computed_forwards(engine.pipe.transformer) == 4
    assert cached.steps == 8
    blocks.clear()
    engine.run(_request(steps=4), RunControl())
    assert len(blocks) == 2  # per job: 1 exact step, then step 3; state did not leak
    exact = tiny_engine.run(_request(steps=8), RunControl())
    assert cached.image.tobytes() != exact.image.tobytes()
    again = engine.run(_request(steps=8), RunControl())
    assert again.image.tobytes() == cached.image.tobytes()


def test_dynamic_compile_never_recompiles_across_api_sizes(tiny_dir):
    """Regional compile with dynamic shapes (dynamo with the eager backend: the same guards
    as inductor, no C++ compiler needed); after warm-up, a sweep of sizes must not recompile.
    """
    import torch
    from PIL import Image

    plan = EnginePlan(tier="exact", memory_mode="full", device="cpu", dtype="float32",
                      attention_backend="native", compile=CompileSpec(backend="eager"))
    engine = _engine_with(tiny_dir, plan)
    try:
        engine.warmup()
        with torch._dynamo.config.patch(error_on_recompile=True):
            for width, height in [(544, 512), (1040, 608)]:
                result = engine.run(_request(width, height, steps=1), RunControl())
                assert result.image.size == (width, height)
            tall = Image.new("RGB", (300, 700), (90, 20, 40))
            assert engine.run(_request(512, 512, 1, tall), RunControl()).steps == 1
    finally:
        torch._dynamo.reset()


def test_step_cache_with_regional_compile_does_not_recompile_in_steady_state(tiny_dir):
    """The turbo tier's compile + step-cache combination: after warm-up, other sizes and
    other step counts (so other computed/predicted patterns) reuse the compiled graphs."""
    import torch

    plan = EnginePlan(tier="turbo", memory_mode="full", device="cpu", dtype="float32",
                      attention_backend="native", compile=CompileSpec(backend="eager"),
                      step_cache=StepCacheSpec())
    engine = _engine_with(tiny_dir, plan)
    try:
        engine.warmup()
        with torch._dynamo.config.patch(error_on_recompile=True):
            for width, height, steps in [(544, 512, 8), (768, 1024, 3)]:
                result = engine.run(_request(width, height, steps), RunControl())
                assert (result.image.size, result.steps) == ((width, height), steps)
    finally:
        torch._dynamo.reset()


def test_shape_set_covers_every_api_size_and_reference_bucket():
    from helpers.engine_probes import image_token_counts

    from pipelines.engine.warmup import OUTPUT_SIDES, all_cases, warmup_plan

    # multiples of 16 from 512 up to 1040 (the API's rule, server/wire/models.py)
    assert OUTPUT_SIDES[0] == 512 and OUTPUT_SIDES[-1] == 1040 and len(OUTPUT_SIDES) == 34
    cases = all_cases()
    assert len(cases) == 34 * 34 * (17 + 1)  # sizes × (17 reference buckets + no reference)
    counts = image_token_counts(cases)
    assert counts[0] == 32 * 32  # 512² output, no reference
    assert counts[-1] == 65 * 65 + (800 // 16) * (1328 // 16)  # 1040² + the largest bucket
    dynamic = warmup_plan(dynamic=True)
    assert [c.image_tokens for c in dynamic.cases] == [counts[0], counts[-1]]
    assert len(warmup_plan(dynamic=False).cases) == len(counts) > 100


@pytest.mark.parametrize(("size", "bucket"), [((800, 600), (1184, 880)),
                                              ((300, 700), (672, 1568)),
                                              ((512, 512), (1024, 1024))])
def test_reference_snaps_to_the_preferred_bucket(size, bucket):
    from pipelines.contract import nearest_preferred

    assert nearest_preferred(*size) == bucket


def test_predicted_token_count_is_what_the_transformer_sees(tiny_engine):
    from PIL import Image

    from pipelines.contract import nearest_preferred
    from pipelines.engine.warmup import ShapeCase

    seen = []
    hook = tiny_engine.pipe.transformer.register_forward_pre_hook(
        lambda _m, _a, kwargs: seen.append(kwargs["hidden_states"].shape[1]), with_kwargs=True)
    try:
        tiny_engine.run(_request(544, 1040, 1, Image.new("RGB", (300, 700))), RunControl())
    finally:
        hook.remove()
    assert seen == [ShapeCase(544, 1040, *nearest_preferred(300, 700)).image_tokens]


def test_engine_benchmark_runs_tiers_and_reports_refusals(tiny_dir, tmp_path):
    """The benchmark script itself, as a CPU smoke run (its timings are not asserted)."""
    import json
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    import engine_benchmark

    out = tmp_path / "rows.json"
    assert engine_benchmark.main([
        "--tiny", "--device", "cpu", "--checkpoint", str(tiny_dir), "--sizes", "512x512",
        "--steps", "2", "--repeats", "1", "--engines", "exact,fp8", "--json", str(out),
    ]) == 0
    rows = {row["engine"]: row for row in json.loads(out.read_text())["rows"]}
    assert rows["exact"]["e2e_s"] > 0 and rows["exact"]["step_ms"] > 0
    assert rows["exact"]["levers"] == "none" and rows["exact"]["speedup"] is None  # no stock
    assert "--tier fp8 needs a CUDA GPU" in rows["fp8"]["refused"]
