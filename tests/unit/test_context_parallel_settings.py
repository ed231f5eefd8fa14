"""--context-parallel K: devices cut into groups of K, and what is refused at startup, with
the reason (the group size, the device kinds, the model's heads, the tier, `auto`)."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from pipelines.errors import InvalidInput
from pipelines.levers.plan import CompileSpec, CudaGraphSpec, EnginePlan
from pipelines.parallel.check import check_group, check_tier, group_plan, transformer_heads
from server.cli.main import build_parser
from server.cli.settings_flags import settings_from_args
from server.engine_build import build_local_engines
from server.settings import Settings


def test_flags_and_environment(monkeypatch: pytest.MonkeyPatch):
    args = build_parser().parse_args(["serve", "--devices", "cpu,cpu,cpu,cpu",
                                      "--context-parallel", "2",
                                      "--context-parallel-mode", "ring"])
    settings = settings_from_args(args)
    assert (settings.context_parallel, settings.context_parallel_mode) == (2, "ring")
    monkeypatch.setenv("KONTEXT_CONTEXT_PARALLEL", "2")
    monkeypatch.setenv("KONTEXT_DEVICES", "0,1")
    assert Settings().context_parallel == 2
    assert Settings().context_parallel_mode == "ulysses"  # the default


@pytest.mark.parametrize(("settings", "reason"), [
    ({"devices": "cpu,cpu,cpu", "context_parallel": 2},
     "3 devices do not divide into groups of 2"),
    ({"context_parallel": 2}, "a group of 2 needs --devices"),
    ({"devices": "cpu,cpu", "context_parallel": 2, "device_workers": "thread"},
     "--device-workers process"),
    ({"devices": "cpu,0", "context_parallel": 2}, "mixes CPU and GPU"),
    ({"devices": "cpu,cpu", "context_parallel": "auto"}, "`auto` is not supported"),
    ({"devices": "cpu,cpu", "context_parallel": 0}, "must be 1 or more"),
])
def test_groups_that_cannot_form_are_refused(settings, reason):
    with pytest.raises(ValidationError, match=reason):
        Settings(**settings)


def test_the_cli_refuses_with_the_reason_and_exit_code_2(capsys):
    from server.cli.main import main

    assert main(["serve", "--demo", "--devices", "cpu,cpu,cpu",
                 "--context-parallel", "2"]) == 2
    assert "do not divide into groups of 2" in capsys.readouterr().err


def test_ulysses_needs_heads_divisible_by_the_group():
    check_group(2, "ulysses", 24)
    check_group(3, "ring", 2)  # ring passes key/value blocks: any head count
    with pytest.raises(InvalidInput, match="use ulysses on CPU"):
        check_group(2, "ring", 2, "cpu")
    with pytest.raises(InvalidInput, match=r"24 attention heads.*not divisible by 5"):
        check_group(5, "ulysses", 24)


def test_the_tiny_checkpoint_refuses_a_group_of_four_at_build(tiny_dir):
    """Two heads (the demo model) do not split four ways: refused before any process starts."""
    assert transformer_heads(tiny_dir) == 2
    settings = Settings(demo=True, demo_dir=tiny_dir, devices="cpu,cpu,cpu,cpu",
                        context_parallel=4, warmup=False)
    with pytest.raises(InvalidInput, match=r"2 attention heads.*not divisible by 4"):
        build_local_engines(settings)


@pytest.mark.parametrize(("tier", "memory_mode", "reason"), [
    ("turbo", "full", "--tier turbo is not run by a group"),
    ("exact", "24gb", "--memory-mode 24gb is not run by a group"),
])
def test_tiers_and_memory_modes_a_group_does_not_run(tier, memory_mode, reason):
    with pytest.raises(InvalidInput, match=reason):
        check_tier(tier, memory_mode)
    check_tier("fp8", "full")
    check_tier("exact", "full")


def test_a_groups_plan_leaves_out_what_bypasses_the_split():
    plan = EnginePlan(tier="fp8", memory_mode="full", device="cuda", dtype="bfloat16",
                      fp8_attention=True, cuda_graphs=CudaGraphSpec(),
                      compile=CompileSpec(fullgraph=True))
    grouped = group_plan(plan)
    assert not grouped.fp8_attention and grouped.cuda_graphs is None
    assert grouped.compile == plan.compile  # uneven splits run uncompiled: said in a note
    assert len(grouped.notes) == 3


def test_a_group_times_only_the_attention_backends_diffusers_can_split():
    """On a GPU the fastest backend is timed at load: in a group, only those diffusers runs
    under context parallelism (both take ring's log-sum-exp), or enabling the split fails."""
    plan = EnginePlan(tier="exact", memory_mode="full", device="cuda", dtype="bfloat16",
                      attention_candidates=("_flash_3", "_native_cudnn", "_native_flash",
                                            "_native_efficient"))
    grouped = group_plan(plan)
    assert grouped.attention_candidates == ("_native_cudnn", "_native_flash")
    assert grouped.notes[-1].endswith("_flash_3, _native_efficient")


def test_groups_are_labelled_by_their_devices(tiny_dir):
    """Four CPU ranks in groups of two: two engines, named by every device they hold."""
    settings = Settings(demo=True, demo_dir=tiny_dir, devices="cpu,cpu,cpu,cpu",
                        context_parallel=2, warmup=False)
    engines, labels = build_local_engines(settings)
    assert labels == ["cpu:0,cpu:1", "cpu:2,cpu:3"]
    assert [engine.info.device for engine in engines] == labels
    assert json.dumps([engine.devices for engine in engines]) == \
        json.dumps([["cpu", "cpu"], ["cpu", "cpu"]])


def test_a_group_serves_kontext_dev_only_klein_is_refused_at_build(tiny_dir):
    """--models naming klein beside --context-parallel: refused before any process starts,
    naming both flags (a group splits the Kontext transformer only)."""
    settings = Settings(demo=True, demo_dir=tiny_dir, devices="cpu,cpu", context_parallel=2,
                        models=["kontext-dev", "klein-4b"], warmup=False)
    with pytest.raises(InvalidInput, match=r"--context-parallel.*kontext-dev only.*klein-4b"):
        build_local_engines(settings)
