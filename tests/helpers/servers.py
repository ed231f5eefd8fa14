"""Fixtures for tiers that run a real server on loopback (http, e2e): the app around a fake
or the tiny engine, started by `serve(...)` and stopped after the test."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from helpers.fake_engine import FakeEngine
from helpers.live_server import LiveServer, start_server
from server.api.app import create_app
from server.settings import Settings


def make_settings(**overrides) -> Settings:
    """Settings for tests, built directly (the autouse fixture keeps KONTEXT_* out)."""
    overrides.setdefault("warmup", False)
    # A CI disk may have less free space than the default reserve; the quota's own tests
    # set it explicitly.
    overrides.setdefault("results_min_free_bytes", 0)
    return Settings(**overrides)


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
