"""KontextEngine on the tiny checkpoint (CPU): bit-exact with stock diffusers, seeded,
exactly sized, and cancellable without decoding."""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest
from PIL import Image

from pipelines.contract import EditRequest, EngineEvent, RunControl
from pipelines.errors import Cancelled


def request(image=None, width=512, height=512, steps=2, seed=7, prompt="make it red"):
    return EditRequest(prompt=prompt, image=image, width=width, height=height, steps=steps,
                       guidance_scale=2.5, seed=seed)


@pytest.fixture(scope="module")
def stock(tiny_dir):
    """Stock diffusers, loaded the documented way, nothing of ours in between."""
    import torch
    from diffusers import FluxKontextPipeline

    pipe = FluxKontextPipeline.from_pretrained(str(tiny_dir), dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def stock_image(pipe, image, width, height, steps, seed, prompt="make it red") -> np.ndarray:
    import torch

    out = pipe(image=image, prompt=prompt, width=width, height=height, max_area=width * height,
               num_inference_steps=steps, guidance_scale=2.5,
               generator=torch.Generator("cpu").manual_seed(seed)).images[0]
    return np.asarray(out)


def test_exact_tier_equals_stock_diffusers_bit_for_bit(tiny_engine, stock):
    assert tiny_engine.info.tier == "exact" and tiny_engine.plan.levers() == []
    reference = Image.linear_gradient("L").resize((800, 600)).convert("RGB")
    ours = tiny_engine.run(request(reference, 768, 544, steps=3, seed=7), RunControl())
    theirs = stock_image(stock, reference, 768, 544, steps=3, seed=7)
    assert ours.image.size == (768, 544)
    assert np.array_equal(np.asarray(ours.image), theirs)


def test_exact_tier_equals_stock_without_a_reference(tiny_engine, stock):
    ours = tiny_engine.run(request(None, 512, 640, steps=2, seed=3), RunControl())
    assert np.array_equal(np.asarray(ours.image), stock_image(stock, None, 512, 640, 2, 3))


def test_same_seed_same_bytes_other_seed_other_bytes(tiny_engine):
    first = tiny_engine.run(request(seed=5), RunControl()).image.tobytes()
    again = tiny_engine.run(request(seed=5), RunControl()).image.tobytes()
    other = tiny_engine.run(request(seed=6), RunControl()).image.tobytes()
    assert first == again
    assert first != other


@pytest.mark.parametrize(("width", "height"), [(512, 1040), (1040, 512), (768, 544)])
def test_output_is_exactly_the_requested_size(tiny_engine, width, height):
    result = tiny_engine.run(request(width=width, height=height, steps=1), RunControl())
    assert result.image.size == (width, height)
    assert result.steps == 1


def test_cancel_mid_run_raises_and_does_not_decode(tiny_engine):
    control = RunControl()
    seen: list[int] = []

    def on_event(event: EngineEvent) -> None:
        seen.append(event.step)
        control.cancel.set()  # the client went away after the first step

    control.emit = on_event
    vae = tiny_engine.pipe.vae
    with mock.patch.object(vae, "decode", wraps=vae.decode) as decode, \
            pytest.raises(Cancelled):
        tiny_engine.run(request(steps=6), control)
    assert seen == [1]
    decode.assert_not_called()
    # The interrupt flag must not leak: the next job runs all its steps.
    assert tiny_engine.run(request(steps=3), RunControl()).steps == 3
