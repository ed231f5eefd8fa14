"""Shared fixtures: the tiny checkpoint, settings, and real servers on loopback."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from helpers.fake_engine import FakeEngine
from helpers.live_server import LiveServer, start_server

from server.app import create_app
from server.settings import Settings

DEV = "inference.flux-fast.dev-kontext.img2img.v1"


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny random checkpoint, written once per test session."""
    from pipelines.tiny_checkpoint import write_tiny_checkpoint

    return write_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "checkpoint")


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
    from pipelines.engine import KontextEngine
    from pipelines.weights import resolve_weights

    engine = KontextEngine(resolve_weights(str(tiny_dir)), device="cpu", demo=True)
    engine.load()
    return _SharedEngine(engine)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip @pytest.mark.gpu tests where there is no CUDA device (issue 4)."""
    gpu_items = [item for item in items if item.get_closest_marker("gpu")]
    if not gpu_items:
        return
    import torch  # only when a GPU test was collected: HTTP-only runs stay torch-free

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in gpu_items:
        item.add_marker(skip)


def make_settings(**overrides) -> Settings:
    """Settings for tests, built directly (the autouse fixture keeps KONTEXT_* out)."""
    overrides.setdefault("warmup", False)
    return Settings(**overrides)


@pytest.fixture(autouse=True)
def _no_kontext_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in [n for n in os.environ if n.startswith("KONTEXT_")]:
        monkeypatch.delenv(name)


@pytest.fixture
def serve() -> Iterator[Callable[..., LiveServer]]:
    """Factory: serve(engine=None, **settings) starts a real server on loopback."""
    servers: list[LiveServer] = []

    def _serve(engine=None, wait_ready: bool = True, **settings) -> LiveServer:
        app = create_app(make_settings(**settings), engine or FakeEngine())
        live = start_server(app, wait_ready=wait_ready)
        servers.append(live)
        return live

    yield _serve
    for live in servers:
        live.stop()
