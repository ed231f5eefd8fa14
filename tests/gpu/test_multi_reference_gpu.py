"""Multi-reference edits on a CUDA device (tiny checkpoint). Skipped without CUDA.

Every tier and memory mode takes references (seeded, at the exact size), and the
inductor-compiled blocks do not recompile across 1–4 inputs and every method after warm-up.
"""

from __future__ import annotations

import pytest
from PIL import Image
from test_engine_gpu import gpu_engine

from pipelines.contract import EditRequest, RunControl
from pipelines.references.plan import REFERENCE_METHODS

pytestmark = pytest.mark.gpu

CANVAS = Image.linear_gradient("L").resize((800, 600)).convert("RGB")
REFERENCES = (Image.new("RGB", (400, 400), (210, 40, 30)),
              Image.radial_gradient("L").resize((300, 520)).convert("RGB"),
              Image.linear_gradient("L").rotate(90).resize((600, 300)).convert("RGB"))


def edit(count: int, method: str, width: int = 768, height: int = 544) -> EditRequest:
    return EditRequest("put the red square on the canvas", CANVAS, width, height, 2, 2.5, 3,
                       references=REFERENCES[:count - 1], reference_method=method)


@pytest.mark.parametrize(("tier", "memory_mode"), [
    ("exact", "full"), ("fp8", "full"), ("turbo", "full"),
    ("exact", "24gb"), ("fp8", "24gb"), ("exact", "16gb"),
])
def test_every_tier_takes_four_inputs_seeded_at_the_exact_size(tiny_dir, tier, memory_mode):
    engine = gpu_engine(tiny_dir, tier, memory_mode)
    try:
        engine.warmup()
        for method in REFERENCE_METHODS:
            first = engine.run(edit(4, method), RunControl())
            again = engine.run(edit(4, method), RunControl())
            assert first.image.size == (768, 544) and len(first.input_sizes) == 4
            assert first.image.tobytes() == again.image.tobytes()
    finally:
        engine.close()


def test_compiled_blocks_do_not_recompile_across_one_to_four_inputs(tiny_dir):
    import torch

    engine = gpu_engine(tiny_dir, "exact")
    assert engine.plan.compile is not None and engine.plan.compile.backend == "inductor"
    try:
        engine.warmup()
        with torch._dynamo.config.patch(error_on_recompile=True):
            for count in (1, 2, 3, 4):
                for method in REFERENCE_METHODS:
                    result = engine.run(edit(count, method, 1024, 1024), RunControl())
                    assert len(result.input_sizes) == count
    finally:
        engine.close()
        torch._dynamo.reset()
