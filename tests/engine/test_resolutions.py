"""The server's copy of Kontext's preferred resolutions matches diffusers, and the nearest
one is the one the pipeline would pick."""

from __future__ import annotations

import pytest

from pipelines.contract import PREFERRED_KONTEXT_RESOLUTIONS, nearest_preferred


def test_the_copy_matches_diffusers():
    from diffusers.pipelines.flux import pipeline_flux_kontext

    assert [tuple(size) for size in pipeline_flux_kontext.PREFERRED_KONTEXT_RESOLUTIONS] == \
        list(PREFERRED_KONTEXT_RESOLUTIONS)


@pytest.mark.parametrize(("size", "expected"), [
    ((640, 480), (1184, 880)), ((480, 640), (880, 1184)), ((500, 500), (1024, 1024)),
    ((2100, 900), (1568, 672)), ((900, 2100), (672, 1568)),
    # aspect ratios of [pro]/[max] jobs run on [dev] (--fallback local)
    ((16, 9), (1392, 752)), ((9, 16), (752, 1392)), ((4, 3), (1184, 880)),
])
def test_nearest_matches_the_pipelines_own_choice(size, expected):
    # diffusers picks `min((abs(aspect - w / h), w, h) for w, h in ...)` in __call__.
    from diffusers.pipelines.flux import pipeline_flux_kontext

    aspect = size[0] / size[1]
    _, width, height = min((abs(aspect - w / h), w, h)
                           for w, h in pipeline_flux_kontext.PREFERRED_KONTEXT_RESOLUTIONS)
    assert nearest_preferred(*size) == (width, height) == expected
