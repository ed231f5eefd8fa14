"""Fixtures of the engine tier: the real pipeline on tiny checkpoints, no HTTP.

Imports neither `server` nor fastapi, so that this tier runs where only the engine's
dependencies are installed. `tiny_dir` (the 1+1-block tiny checkpoint) comes from
tests/conftest.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def deep_tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny checkpoint at the real depth (19 double + 38 single blocks), tiny width:
    per-block compile effects (guards, recompiles) show on it as on the real model."""
    from pipelines.weights.tiny import REAL_DEPTH, write_tiny_checkpoint

    return write_tiny_checkpoint(tmp_path_factory.mktemp("deep") / "checkpoint", REAL_DEPTH)


@pytest.fixture(scope="session")
def tiny_engine(tiny_dir: Path):
    """A loaded exact-tier KontextEngine on the tiny checkpoint, CPU (shared: tests must
    leave it as they found it)."""
    from pipelines.engine.kontext import KontextEngine
    from pipelines.engine.options import EngineOptions
    from pipelines.weights.source import resolve_weights

    engine = KontextEngine(resolve_weights(str(tiny_dir)), EngineOptions(device="cpu", demo=True))
    engine.load()
    yield engine
    engine.close()


@pytest.fixture
def empty_hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the Hugging Face cache at an empty folder (constants are read at import)."""
    import huggingface_hub.constants

    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    return cache


@pytest.fixture
def no_fp8_hardware_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let torchao quantise to float8 on CPU: torch's CPU _scaled_mm computes float8 matmuls
    (row-wise scales too); only torchao's check for a float8 GPU stands in the way."""
    quant_api = pytest.importorskip("torchao.quantization.quant_api")
    monkeypatch.setattr(quant_api, "_check_hardware_support", lambda granularity: None)
