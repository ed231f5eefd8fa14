"""Fixtures of the GPU tier. Imports neither `server` nor fastapi: a GPU machine with only
the engine's dependencies collects and runs these tests. `tiny_dir` and the hook that skips
@pytest.mark.gpu tests without CUDA come from tests/conftest.py."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def deep_tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny checkpoint at the real depth (19 + 38 blocks): per-block recompiles show."""
    from pipelines.weights.tiny import REAL_DEPTH, write_tiny_checkpoint

    return write_tiny_checkpoint(tmp_path_factory.mktemp("deep") / "checkpoint", REAL_DEPTH)
