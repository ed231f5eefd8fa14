"""A CPU group (two gloo ranks, Ulysses) with its transformer blocks compiled: after the
warm-up, jobs whose split is even run compiled without a recompile on either rank (each
rank's process errs on one), a job whose split is uneven runs its blocks eagerly (dynamo
cannot trace diffusers' uneven all-to-all), and every job gives the image of one process.

aot_eager in CI (dynamo's graphs and guards, no code generation); inductor (C++ code
generation on CPU, minutes on 2 cores) under `-m slow`.
"""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
from helpers.device_engines import compiled_rank_engine
from PIL import Image

from pipelines.contract import EditRequest, EngineInfo, RunControl
from server.engines.group import GroupEngine

pytestmark = pytest.mark.timeout(1800)

CANVAS = Image.new("RGB", (320, 256), (90, 120, 150))
JOBS = [EditRequest("make it blue", None, 512, 512, 2, 2.5, 3),         # 1024 tokens: even
        EditRequest("make it blue", None, 528, 528, 2, 2.5, 3),         # 1089: uneven
        EditRequest("make it blue", CANVAS, 512, 512, 2, 2.5, 3)]       # with a canvas


def group(tiny_dir, backend: str) -> GroupEngine:
    info = EngineInfo(model="tiny", device="cpu:0,cpu:1", dtype="float32", demo=True,
                      tier="exact")
    return GroupEngine(partial(compiled_rank_engine, str(tiny_dir), backend),
                       ["cpu", "cpu"], "cpu:0,cpu:1", info)


def images(engine: GroupEngine) -> list[np.ndarray]:
    engine.load()
    try:
        engine.warmup()
        return [np.asarray(engine.run(job, RunControl()).image, dtype=np.int16)
                for job in JOBS]
    finally:
        engine.close()


@pytest.mark.parametrize("backend", [
    "aot_eager", pytest.param("inductor", marks=pytest.mark.slow)])
def test_a_compiled_group_does_not_recompile_after_warmup(tiny_dir, backend):
    from pipelines.engine.kontext import KontextEngine
    from pipelines.engine.options import EngineOptions
    from pipelines.weights.source import resolve_weights

    compiled = images(group(tiny_dir, backend))
    alone = KontextEngine(resolve_weights(str(tiny_dir)), EngineOptions(device="cpu"))
    alone.load()
    for job, image in zip(JOBS, compiled, strict=True):
        expected = np.asarray(alone.run(job, RunControl()).image, dtype=np.int16)
        assert np.abs(image - expected).max() <= 2
