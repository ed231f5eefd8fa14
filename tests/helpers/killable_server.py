"""A fake-engine server in its own process, for tests that kill it (SIGKILL) mid-job.

Usage, from tests/: python -m helpers.killable_server RESULTS_DIR — prints the server's
URL, then serves until killed. (As a module: run as a script, helpers/http.py would shadow
the standard library's http package.)
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from helpers.fake_engine import FakeEngine
from helpers.live_server import start_server
from server.api.app import create_app
from server.settings import Settings


def main() -> None:
    """Serve on a free loopback port with results in argv[1]; print the URL."""
    settings = Settings(results_dir=Path(sys.argv[1]), warmup=False,
                        results_min_free_bytes=0)
    live = start_server(create_app(settings, FakeEngine(step_seconds=0.1)))
    print(live.url, flush=True)
    while True:
        time.sleep(60)


if __name__ == "__main__":
    main()
