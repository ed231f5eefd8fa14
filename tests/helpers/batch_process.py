"""Running `kontext batch` as a real process and pressing Ctrl-C at a chosen moment."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def interrupt_after_first_output(args: list[str], out: Path, timeout: float = 120
                                 ) -> tuple[int, str, str]:
    """Start `python -m server.cli.main *args`, SIGINT it once `out` holds a PNG; (rc, out, err)."""
    process = subprocess.Popen([sys.executable, "-m", "server.cli.main", *args], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + timeout
    while not list(out.glob("*.png")) and process.poll() is None:
        assert time.monotonic() < deadline, "no output appeared"
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    return process.returncode, stdout, stderr
