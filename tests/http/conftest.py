"""The http tier: a real server on loopback, mostly around the fake engine."""

from __future__ import annotations

import pytest
from helpers.fake_upstream import FakeUpstream
from helpers.servers import serve  # noqa: F401  (fixture)


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory):
    """A fake upstream (hosted /v2/job and BFL protocols) over HTTPS on loopback."""
    server = FakeUpstream(tmp_path_factory.mktemp("fake-upstream")).start()
    yield server
    server.stop()
