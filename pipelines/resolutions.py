"""The sizes Kontext was trained at, and the nearest one to an aspect ratio.

A copy of diffusers' PREFERRED_KONTEXT_RESOLUTIONS (pipelines/flux/pipeline_flux_kontext.py),
so that the server can pick a size without importing diffusers (and torch);
tests/engine/test_resolutions.py checks that it still matches diffusers.
"""

from __future__ import annotations

#: (width, height) pairs of about 1 MP, all multiples of 16.
PREFERRED_KONTEXT_RESOLUTIONS: tuple[tuple[int, int], ...] = (
    (672, 1568), (688, 1504), (720, 1456), (752, 1392), (800, 1328), (832, 1248),
    (880, 1184), (944, 1104), (1024, 1024), (1104, 944), (1184, 880), (1248, 832),
    (1328, 800), (1392, 752), (1456, 720), (1504, 688), (1568, 672),
)


def nearest_preferred(width: int, height: int) -> tuple[int, int]:
    """The preferred resolution whose aspect ratio is nearest width:height (as
    FluxKontextPipeline's `_auto_resize` picks it: the first of equals)."""
    ratio = width / height
    return min(PREFERRED_KONTEXT_RESOLUTIONS, key=lambda size: abs(size[0] / size[1] - ratio))
