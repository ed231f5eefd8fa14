"""Output files: atomic writes, and whether an existing output is complete (for resuming)."""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

from PIL import Image

#: Temp files are named `.<output name>.<random>.kontext-partial` next to their output.
TEMP_SUFFIX = ".kontext-partial"


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that `path` is either absent, the old file, or all of `data`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}{TEMP_SUFFIX}")
    # os.open with 0o666 (not tempfile.mkstemp's 0o600): the output gets the umask's mode.
    handle = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException:
        # Also on KeyboardInterrupt: never leave a partial file behind.
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


def output_is_valid(path: Path, width: int, height: int) -> bool:
    """Whether `path` holds a fully decodable image of exactly width × height."""
    try:
        with Image.open(path) as image:
            if image.size != (width, height):
                return False
            image.load()
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return False
    return True


def remove_stale_temps(directory: Path) -> list[Path]:
    """Delete temp files left by a run that was killed (SIGKILL, power loss); returns them."""
    if not directory.is_dir():
        return []
    stale = [p for p in directory.rglob(f".*{TEMP_SUFFIX}") if p.is_file()]
    for path in stale:
        with contextlib.suppress(OSError):
            path.unlink()
    return stale
