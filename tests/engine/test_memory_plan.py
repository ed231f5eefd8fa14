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
    # float8 linears: about one byte per weight
    assert fp8.resident["transformer"] < 0.55 * exact.resident["transformer"]
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
