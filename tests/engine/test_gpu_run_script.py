"""benchmarks/gpu_run.py on CPU: the record is written after every step, the time guard
skips what no longer fits, and (slow) the whole run on the tiny model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ENGINES = "engine:stock,engine:exact,engine:fp8,engine:turbo"


def gpu_run(tmp_path: Path, *args: str, timeout: int = 600) -> dict:
    out = tmp_path / "run.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "benchmarks/gpu_run.py", "--tiny", "--cpu", "--size", "512",
                    "--steps", "2", "--out", str(out), *args], cwd=ROOT, env=env,
                   timeout=timeout, check=False, capture_output=True)
    return json.loads(out.read_text())


def test_micro_benchmarks_run_and_every_step_is_recorded(tmp_path):
    record = gpu_run(tmp_path, "--skip", f"{ENGINES},memory_plans")
    steps = record["steps"]
    assert record["complete"] and record["command"].startswith("python benchmarks/gpu_run.py")
    assert "torch" in steps["facts"] and steps["micro_attention"]["ms"]
    assert steps["micro_gemm"]["fp8_speedup"] > 0
    assert steps["deviation"] == {"skipped": "the exact tier did not run",
                                  "step_seconds": steps["deviation"]["step_seconds"]}
    assert steps["memory:24gb"]["skipped"] == "memory modes need CUDA"


def test_steps_that_no_longer_fit_the_budget_are_skipped_and_said_so(tmp_path):
    record = gpu_run(tmp_path, "--budget", "40", "--skip", "memory_plans")
    assert record["complete"]
    skipped = [name for name, step in record["steps"].items() if "skipped" in step]
    # engine:exact needs 150 s of the 40: it and the later engine steps are skipped
    assert "engine:exact" in skipped and "left, needs 150s" in record["steps"]["engine:exact"][
        "skipped"]


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_the_whole_run_on_the_tiny_model(tmp_path):
    record = gpu_run(tmp_path, "--budget", "1500", timeout=1700)
    steps = record["steps"]
    assert record["complete"] and not [s for s in steps.values() if "error" in s]
    for spec in ("stock", "exact", "fp8", "turbo"):
        assert steps[f"engine:{spec}"]["no_recompile_after_warmup"]
    assert set(steps["deviation"]["vs_exact"]) == {"stock", "fp8", "turbo"}
