"""Run jobs through the official JS clients (npm `prodia/v2`, `@ai-sdk/prodia`) via node."""

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
    if not all((JS_DIR / "node_modules" / name).is_dir() for name in ("prodia", "ai")):
        pytest.fail(f"run `npm install` in {JS_DIR} first (scripts/install.sh --test does)")


def _node(script: str, args: dict[str, Any], timeout: float) -> dict[str, Any]:
    require_js_client()
    done = subprocess.run(["node", script, json.dumps(args)], cwd=JS_DIR,
                          capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise AssertionError(f"node failed ({done.returncode}): {done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_ai_sdk_image(base_url: str, model: str, prompt: str, seed: int | None = None,
                     token: str = "test-token", timeout: float = 120,
                     size: str | None = None) -> dict[str, Any]:
    """Outcome of the AI SDK's generateImage with @ai-sdk/prodia pointed at `base_url`."""
    return _node("ai_sdk_image.mjs", {"baseURL": base_url, "model": model, "prompt": prompt,
                                      "seed": seed, "token": token, "size": size}, timeout)


def run_ai_sdk_edit(base_url: str, model: str, prompt: str, image: Path, media_type: str,
                    aspect_ratio: str | None = None, token: str = "test-token",
                    timeout: float = 120) -> dict[str, Any]:
    """Outcome of the AI SDK's generateText with an image file part (its only edit path)."""
    return _node("ai_sdk_text.mjs", {"baseURL": base_url, "model": model, "prompt": prompt,
                                     "image": str(image), "mediaType": media_type,
                                     "aspectRatio": aspect_ratio, "token": token}, timeout)


def run_js_job(base_url: str, job_type: str, config: dict[str, Any],
               inputs: list[Path] | None = None, accept: str | None = None,
               token: str = "test-token", output_path: Path | None = None,
               timeout: float = 120, **extra: Any) -> dict[str, Any]:
    """The client's outcome: {"ok": True, "job", "outputBytes"} or {"ok": False, ...}."""
    args = {"baseUrl": base_url, "token": token, "type": job_type, "config": config,
            "inputs": [str(p) for p in inputs or []], "accept": accept,
            "outputPath": str(output_path) if output_path else None, **extra}
    return _node("run_job.mjs", args, timeout)
