"""Real image files made in memory for tests."""

from __future__ import annotations

import io

from PIL import Image


def image_bytes(width: int = 640, height: int = 480, fmt: str = "PNG",
                mode: str = "RGB", color=(200, 100, 50), **save) -> bytes:
    """An encoded image of the given size, format and mode."""
    if mode in ("RGBA", "LA") and isinstance(color, tuple) and len(color) == 3:
        color = (*color, 255) if mode == "RGBA" else (color[0], 255)
    image = Image.new(mode, (width, height), color)
    buffer = io.BytesIO()
    image.save(buffer, fmt, **save)
    return buffer.getvalue()


def gradient_png(width: int = 640, height: int = 480) -> bytes:
    """A PNG with structure (a gradient), so edits and resizes are visible."""
    image = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()
