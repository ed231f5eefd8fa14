"""Shared by every tier, and light: neither torch nor the server is imported here (the
engine and gpu tiers must collect without fastapi; the unit tier without torch).

Tiers are folders: unit/ (pure logic), http/ (a real server with a fake engine), engine/
(the real pipeline on the tiny checkpoint), e2e/ (real server, tiny engine, official clients,
browser, CLI), ray_serve/ (Ray Serve on a local Ray instance, CPU), gpu/ (CUDA only).
Each test gets its folder's marker: `pytest -m unit`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).parent
sys.path.insert(0, str(TESTS))

TIERS = ("unit", "http", "engine", "e2e", "ray_serve", "gpu")


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny random checkpoint, written once per test session."""
    from pipelines.weights.tiny import write_tiny_checkpoint

    return write_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "checkpoint")


@pytest.fixture(scope="session")
def tiny_classifier_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny NSFW-style classifier (helpers/tiny_classifier.py: red images are flagged)
    saved as a real model folder, loaded through `safety_model` like a real one."""
    from helpers.tiny_classifier import write_tiny_classifier

    return write_tiny_classifier(tmp_path_factory.mktemp("classifier") / "tiny-nsfw")


class _SharedEngine:
    """A session-wide engine that test servers can start and stop without unloading it."""

    def __init__(self, engine) -> None:
        self._engine = engine

    def __getattr__(self, name: str):
        return getattr(self._engine, name)

    def load(self) -> None:
        if self._engine.pipe is None:
            self._engine.load()

    def close(self) -> None:
        """Servers close their engine on stop; the next test still needs this one."""


@pytest.fixture(scope="session")
def tiny_engine(tiny_dir: Path):
    """A loaded KontextEngine on the tiny checkpoint (shared: loading costs ~1 s)."""
    from pipelines.engine.kontext import KontextEngine
    from pipelines.engine.options import EngineOptions
    from pipelines.weights.source import resolve_weights

    engine = KontextEngine(resolve_weights(str(tiny_dir)), EngineOptions(device="cpu", demo=True))
    engine.load()
    return _SharedEngine(engine)


@pytest.fixture(scope="session")
def tiny_klein_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny random FLUX.2 [klein] checkpoint, written once per test session."""
    from pipelines.weights.tiny_klein import write_tiny_klein_checkpoint

    return write_tiny_klein_checkpoint(tmp_path_factory.mktemp("tiny-klein") / "checkpoint")


@pytest.fixture(scope="session")
def tiny_klein_engine(tiny_klein_dir: Path):
    """A loaded KleinEngine (klein-4b) on the tiny klein checkpoint (shared)."""
    from pipelines.engine.klein import KleinEngine
    from pipelines.engine.options import EngineOptions
    from pipelines.weights.source import resolve_weights

    engine = KleinEngine(resolve_weights(str(tiny_klein_dir)),
                         EngineOptions(device="cpu", demo=True, warmup_size=(64, 64)))
    engine.load()
    return _SharedEngine(engine)


@pytest.fixture
def kontext_and_klein(tiny_engine, tiny_klein_engine):
    """Kontext [dev] and klein 4B side by side on one device (the shared tiny engines)."""
    from pipelines.engine.models import ModelSetEngine

    return ModelSetEngine({"kontext-dev": tiny_engine, "klein-4b": tiny_klein_engine})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark each test with its tier (its folder); skip gpu tests where there is no CUDA."""
    for item in items:
        tier = Path(item.path).relative_to(TESTS).parts[0]
        if tier in TIERS:
            item.add_marker(getattr(pytest.mark, tier))
    gpu_items = [item for item in items if item.get_closest_marker("gpu")]
    if not gpu_items:
        return
    import torch  # only when a GPU test was collected

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in gpu_items:
        item.add_marker(skip)


@pytest.fixture(autouse=True)
def _no_kontext_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in [n for n in os.environ if n.startswith("KONTEXT_")]:
        monkeypatch.delenv(name)
