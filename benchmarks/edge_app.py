"""The app the edge benchmark serves (the real app around the tests' FakeEngine), and a
launcher for the uvicorn variants it compares.

    python benchmarks/edge_app.py edge|h11|httptools PORT   # uvicorn variants
    granian --interface asgi --factory benchmarks.edge_app:make_app ...   # granian
    hypercorn benchmarks.edge_app:app ...                                 # hypercorn

Settings come from KONTEXT_* variables; EDGE_STEP_SECONDS slows each fake denoising step.
Run from the repository root with the repository and tests/ on PYTHONPATH.
"""

from __future__ import annotations

import collections
import os
import sys

from helpers.fake_engine import FakeEngine

from server.api.app import create_app
from server.logs import configure_logging
from server.settings import Settings


def make_app():
    """The app: real routes, admission and limits; a fake engine (no torch)."""
    configure_logging("warning")
    engine = FakeEngine(step_seconds=float(os.environ.get("EDGE_STEP_SECONDS", "0")))
    # The fake engine keeps every request it ran (input images included) for tests to
    # look at; a soak must not measure that: keep the last few only.
    engine.requests = collections.deque(maxlen=4)
    return create_app(Settings(warmup=False), engine)


def main(mode: str, port: int) -> int:
    """Serve on 127.0.0.1:`port`: `edge` as `kontext serve` does, or plain uvicorn."""
    app = make_app()
    if mode == "edge":
        from server.cli.runner import run_app

        return run_app(app, "127.0.0.1", port)
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=port, http=mode, log_config=None,
                timeout_keep_alive=65)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1], int(sys.argv[2])))
