"""Run a job through the official JS client (npm `prodia`, module `prodia/v2`) via node."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

JS_DIR = Path(__file__).resolve().parent.parent / "js"


def require_js_client() -> None:
    """Fail loudly when node or the npm packages are missing (.ci/run installs them)."""
    if shutil.which("node") is None:
        pytest.fail("node is not installed; .ci/run installs it (see README)")
    if not (JS_DIR / "node_modules" / "prodia").is_dir():
        pytest.fail(f"run `npm ci` in {JS_DIR} first (.ci/run does)")


def run_js_job(base_url: str, job_type: str, config: dict[str, Any],
               inputs: list[Path] | None = None, accept: str | None = None,
               token: str = "test-token", output_path: Path | None = None,
               timeout: float = 120, **extra: Any) -> dict[str, Any]:
    """The client's outcome: {"ok": True, "job", "outputBytes"} or {"ok": False, ...}."""
    require_js_client()
    args = {"baseUrl": base_url, "token": token, "type": job_type, "config": config,
            "inputs": [str(p) for p in inputs or []], "accept": accept,
            "outputPath": str(output_path) if output_path else None, **extra}
    done = subprocess.run(["node", "run_job.mjs", json.dumps(args)], cwd=JS_DIR,
                          capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise AssertionError(f"node failed ({done.returncode}): {done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])
