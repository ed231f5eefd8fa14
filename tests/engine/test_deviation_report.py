"""benchmarks/deviation_report.py on CPU: the lossy tiers rehearsed on the tiny model. Its
figures are not asserted, only that each row measures the engine it names."""

from __future__ import annotations

import sys
from pathlib import Path
from unittest import mock

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

pytest.importorskip("torchao")


def test_the_fp8_attention_rehearsal_plan_does_not_say_fp8_attention_is_off():
    import deviation_report

    fp8, with_attention = (deviation_report.rehearsal_plan(spec)
                           for spec in ("fp8", "fp8+fp8-attention"))
    assert not fp8.fp8_attention and any("fp8 attention is off" in n for n in fp8.notes)
    assert with_attention.fp8_attention and with_attention.device == "cpu"
    assert not any("fp8 attention is off" in n for n in with_attention.notes)
    assert with_attention.attention_backend == "native"  # FA3 is never timed on the CPU


def test_the_fp8_attention_row_runs_fp8_attention_and_says_how_far_it_is_from_fp8(
        tiny_dir, capsys):
    """After the exact and fp8 engines in the same process, the fp8+fp8-attention engine
    runs fp8 attention in every attention module at every step (and only it does), and its
    row gives its own distance from the fp8 output: two outputs at one distance from the
    exact tier's can still differ."""
    from helpers.engine_probes import NO_CPU_ROWWISE, cpu_float8_rowwise

    if not cpu_float8_rowwise():
        pytest.skip(NO_CPU_ROWWISE)
    import deviation_report

    from pipelines.levers import attention_fp8

    modules = 2  # the tiny transformer: one double block, one single block
    steps = 2
    calls = {}
    spy = mock.patch.object(attention_fp8, "fp8_attention", wraps=attention_fp8.fp8_attention)
    real_run = deviation_report.run_ours

    def run_ours(checkpoint, device, spec, size, steps):
        with spy as fp8_attention:
            result = real_run(checkpoint, device, spec, size, steps)
        calls[spec] = fp8_attention.call_count
        return result

    with mock.patch.object(deviation_report, "run_ours", run_ours):
        assert deviation_report.main([
            "--tiny", "--device", "cpu", "--checkpoint", str(tiny_dir), "--size", "256x256",
            "--steps", str(steps), "--engines", "fp8,fp8+fp8-attention"]) == 0
    assert calls["exact"] == calls["fp8"] == 0
    # the warm-up's and the edit's forwards: a call per module per forward, the edit's steps
    assert calls["fp8+fp8-attention"] % modules == 0
    assert calls["fp8+fp8-attention"] >= modules * steps
    rows = {cells[0]: cells for cells in map(_cells, capsys.readouterr().out.splitlines())
            if cells and cells[0].startswith("fp8")}
    assert rows["fp8"][-1] == "—"
    versus, _, base = rows["fp8+fp8-attention"][-1].partition(" ")
    assert base == "(vs fp8)" and float(versus) > 0


def test_the_floor_row_moves_one_weight_of_the_transformer_by_one_ulp(tiny_dir):
    import deviation_report
    import torch

    from pipelines.weights.source import load_pipeline, resolve_weights

    nudged = deviation_report.nudged_pipeline(tiny_dir, "bfloat16").transformer.state_dict()
    stock = load_pipeline(resolve_weights(str(tiny_dir)), torch.bfloat16).transformer
    moved = {name: (weight != nudged[name]).nonzero().tolist()
             for name, weight in stock.state_dict().items() if not weight.equal(nudged[name])}
    assert moved == {"proj_out.weight": [[0, 0]]}
    before, after = stock.proj_out.weight[0, 0], nudged["proj_out.weight"][0, 0]
    assert after > before and after == torch.nextafter(before, torch.tensor(
        float("inf"), dtype=torch.bfloat16))


def _cells(line: str) -> list[str]:
    """The cells of one markdown table row ([] for any other line)."""
    if not line.startswith("|"):
        return []
    return [cell.strip() for cell in line.strip().strip("|").split("|")]
