"""Writing a file so that it is either absent, the old file, or all of the new data.

Used for async job records and outputs, and for batch outputs; a crash or Ctrl-C part-way
leaves at most a temp file (`.<name>.<random>.kontext-partial`) that is cleaned up later.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

#: Temp files are named `.<name>.<random>.kontext-partial` next to the file they become.
TEMP_SUFFIX = ".kontext-partial"


def write_atomic(path: Path, data: bytes, durable: bool = True) -> None:
    """Write `data` to `path` through a temp file and os.replace.

    `durable` fsyncs before the rename: for outputs that took GPU minutes to make.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}{TEMP_SUFFIX}")
    # os.open with 0o666 (not tempfile.mkstemp's 0o600): the file gets the umask's mode.
    handle = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            if durable:
                file.flush()
                os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException:
        # Also on KeyboardInterrupt: never leave a partial file behind.
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


def remove_stale_temps(directory: Path) -> list[Path]:
    """Delete temp files left by a process that was killed (SIGKILL, power loss)."""
    if not directory.is_dir():
        return []
    stale = [p for p in directory.rglob(f".*{TEMP_SUFFIX}") if p.is_file()]
    for path in stale:
        with contextlib.suppress(OSError):
            path.unlink()
    return stale
