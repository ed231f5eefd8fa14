"""Whether an existing output is complete (for resuming); written by atomic_files."""

from __future__ import annotations

from pathlib import Path

from PIL import Image


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
