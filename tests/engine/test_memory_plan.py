"""The memory plan of every mode from the real FLUX.1 Kontext [dev] component configs, on
the meta device (no weights, no GPU), and the startup refusal of a mode that cannot fit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipelines.errors import InvalidInput
from pipelines.levers.plan import Capabilities, plan_engine
from pipelines.memory.plan import GIB, check_memory_plan, module_bytes, plan_memory

CONFIGS = Path(__file__).resolve().parents[2] / "benchmarks" / "kontext_dev_configs.json"
H100 = Capabilities(cuda=True, compute_capability=(9, 0), torchao=True)
H100_BYTES, CARD_24GB = 80 * GIB, 24 * GIB


@pytest.fixture(scope="module")
def configs() -> dict:
    return json.loads(CONFIGS.read_text())


def test_meta_components_have_the_published_parameter_counts(configs):
    from pipelines.memory.plan import build_meta

    parts = build_meta(configs)
    counts = configs["parameter_counts"]
    for name, module in parts.items():
        assert sum(p.numel() for p in module.parameters()) == counts[name], name
    # bf16: two bytes per parameter (buffers aside)
    assert module_bytes(parts["transformer"]) >= 2 * counts["transformer"]


@pytest.mark.parametrize(("tier", "mode"), [("exact", "full"), ("fp8", "full"),
                                            ("turbo", "full"), ("exact", "24gb"),
                                            ("fp8", "24gb"), ("turbo", "24gb"),
                                            ("exact", "16gb")])
def test_every_mode_fits_its_cap_with_the_margin_printed(configs, tier, mode):
    plan = plan_memory(configs, plan_engine(tier, mode, "cuda", H100), H100_BYTES)
    print(plan.describe())
    assert plan.margin > 0, plan.describe()
    assert plan.activations["denoise"] > 0.1 * GIB  # 8,704 tokens through 57 blocks


def test_weight_levers_change_the_plan_as_they_should(configs):
    def plan(tier, mode):
        return plan_memory(configs, plan_engine(tier, mode, "cuda", H100), H100_BYTES)

    exact, fp8 = plan("exact", "full"), plan("fp8", "full")
    # fused QKV dropped the unfused copies: the transformer is its 11.9 B bf16 weights
    assert exact.resident["transformer"] == pytest.approx(2 * 11_901_408_320, rel=0.001)
    # float8 linears: about one byte per weight, but the 3.3 B weights of the embedders and
    # AdaLN modulations stay bf16 (quantize.KEEP_BF16): 8.6 GB + 6.6 GB of 23.8 GB
    assert 0.6 < fp8.resident["transformer"] / exact.resident["transformer"] < 0.68
    # 24gb streams T5 (9 GB) from CPU memory; 16gb streams the transformer block by block
    assert plan("exact", "24gb").resident["text_encoder_2"] == 0
    sixteen = plan("exact", "16gb")
    assert sixteen.streamed["transformer"] < GIB and sixteen.resident["transformer"] < GIB


def test_a_mode_that_cannot_fit_is_refused_at_startup_with_the_numbers(configs, tmp_path):
    from pipelines.weights.source import WeightsSource

    for name in ("transformer", "text_encoder_2", "text_encoder", "vae"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text(json.dumps(configs[name]))
    source = WeightsSource("folder", str(tmp_path))
    plan = plan_engine("exact", "full", "cuda", H100)
    with pytest.raises(InvalidInput) as info:  # bf16 everything on a 24 GB card
        check_memory_plan(source, plan, device_bytes=CARD_24GB)
    message = str(info.value)
    assert "--memory-mode full cannot fit --tier exact" in message
    assert "transformer 22.2" in message and "margin -" in message
    fits = check_memory_plan(source, plan_engine("fp8", "24gb", "cuda", H100),
                             device_bytes=CARD_24GB)
    assert fits is not None and "margin" in fits
    assert check_memory_plan(WeightsSource("folder", str(tmp_path / "none")), plan) is None


def test_cuda_graphs_are_planned_where_the_plan_records_them(configs):
    full = plan_memory(configs, plan_engine("exact", "full", "cuda", H100), H100_BYTES)
    capped = plan_memory(configs, plan_engine("fp8", "24gb", "cuda", H100), H100_BYTES)
    spec = plan_engine("exact", "full", "cuda", H100).cuda_graphs
    # one forward's activations at the planned geometry per graph the policy allows
    assert full.graphs == spec.max_graphs * full.activations["denoise"] > 0
    assert "CUDA graphs" in full.describe()
    assert capped.graphs == 0 and "CUDA graphs" not in capped.describe()


def test_the_fp8_tiers_quantise_the_block_linears_and_keep_the_rest_bf16(configs):
    """torchao's FLUX choice (embedders, AdaLN modulations, norm_out, proj_out in bf16); its
    other rule, no side under 1024, would exclude nothing more on the real model."""
    import torch

    from pipelines.levers.quantize import fp8_eligible
    from pipelines.memory.plan import build_meta

    transformer = build_meta(configs, ("transformer",))["transformer"]
    linears = [(n, m) for n, m in transformer.named_modules() if isinstance(m, torch.nn.Linear)]
    quantised = [(n, m) for n, m in linears if fp8_eligible(n, m)]
    kept = {n for n, m in linears if not fp8_eligible(n, m)}
    assert len(kept) == 8 + 19 * 2 + 38 + 2
    assert {"x_embedder", "context_embedder", "norm_out.linear", "proj_out",
            "transformer_blocks.3.norm1_context.linear",
            "single_transformer_blocks.37.norm.linear"} <= kept
    assert "single_transformer_blocks.0.proj_out" not in kept  # the blocks' own proj_out
    assert all(min(m.in_features, m.out_features) >= 1024 for _, m in quantised)


def test_every_served_model_counts_on_one_device(tiny_dir, tiny_klein_dir):
    from pipelines.memory.models import check_model_set, klein_memory
    from pipelines.memory.plan import RESERVED, read_configs

    plan = plan_engine("exact", "full", "cuda", H100)
    kontext = plan_memory(read_configs(str(tiny_dir)), plan, CARD_24GB)
    klein = klein_memory(str(tiny_klein_dir), plan, CARD_24GB)
    assert set(klein.resident) == {"transformer", "text_encoder", "vae"}
    assert klein.activations["denoise"] > 0
    plans = {"kontext-dev": kontext, "klein-4b": klein}
    resident = sum(module for memory in plans.values() for module in memory.resident.values())
    assert "models on one device: peak" in check_model_set(plans, CARD_24GB)
    # A device with room for either model alone, not for both: refused with the numbers.
    together = resident + max(memory.peak - sum(memory.resident.values())
                              for memory in plans.values())
    assert together > max(memory.peak for memory in plans.values())
    with pytest.raises(InvalidInput, match=r"--models kontext-dev,klein-4b cannot share this "
                                           r"device: models on one device: peak .* GiB = "
                                           r"resident weights \(kontext-dev .* \+ klein-4b"):
        check_model_set(plans, RESERVED + together - 1)
