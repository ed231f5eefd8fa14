"""Run a FakeEngine server in this process the way `kontext serve` runs one (run_app).

For subprocess tests of signals, from the tests folder:
`python -m helpers.fake_server PORT STEP_SECONDS GRACE`.
"""

from __future__ import annotations

import sys

from helpers.fake_engine import FakeEngine
from server.api.app import create_app
from server.cli.runner import run_app
from server.logs import configure_logging
from server.settings import Settings


def main(argv: list[str]) -> int:
    """Serve on 127.0.0.1:PORT until a signal drains and stops the server."""
    port, step_seconds, grace = int(argv[0]), float(argv[1]), float(argv[2])
    configure_logging("info")
    settings = Settings(warmup=False,
                        results_min_free_bytes=0, shutdown_grace_seconds=grace)
    app = create_app(settings, FakeEngine(step_seconds=step_seconds))
    return run_app(app, "127.0.0.1", port)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
