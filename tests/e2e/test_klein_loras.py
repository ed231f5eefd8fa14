"""A LoRA of one model family is refused on the other with a 400 naming it: real LoRA files
(built here on the tiny transformers), read by the real LoRA library, through a server."""

from dataclasses import replace
from pathlib import Path

import pytest
from helpers.fake_engine import FakeEngine
from helpers.http import DEV, job_of, post_job
from helpers.images import gradient_png
from helpers.lora_files import make_lora, save_diffusers

from pipelines.loras.manager import LoraManager

KLEIN_TXT = "inference.flux-2.klein.4b.txt2img.v1"


def save_klein_lora(tiny_klein_dir: Path, path: Path) -> Path:
    """A rank-2 PEFT LoRA on the tiny klein transformer, in diffusers' layout."""
    import torch
    from diffusers import Flux2Transformer2DModel
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict
    from safetensors.torch import save_file

    transformer = Flux2Transformer2DModel.from_pretrained(str(tiny_klein_dir / "transformer"))
    transformer.add_adapter(LoraConfig(r=2, lora_alpha=2, lora_dropout=0.0,
                                       target_modules=["to_qkv_mlp_proj", "to_q"]))
    state = get_peft_model_state_dict(transformer)
    save_file({f"transformer.{key}": torch.randn(value.shape) for key, value in state.items()},
              str(path))
    return path


@pytest.fixture
def both_with_loras(serve, tiny_dir, tiny_klein_dir, tmp_path):
    folder = tmp_path / "loras"
    folder.mkdir()
    save_diffusers(make_lora(tiny_dir, seed=1), folder / "kontext-style.safetensors")
    save_klein_lora(tiny_klein_dir, folder / "klein-style.safetensors")
    catalog = LoraManager(folder)  # the engine's own catalog, without a transformer
    catalog.problem = None  # as once installed: nothing refuses LoRAs here
    engine = FakeEngine(loras=catalog)
    parts = (engine.info, replace(engine.info, family="klein-4b", model="FLUX.2-klein-4B"))
    engine.info = replace(engine.info, models=parts)
    return serve(engine), engine


def test_a_lora_of_one_family_is_refused_on_the_other(both_with_loras):
    live, engine = both_with_loras
    reply = post_job(live.url, {"prompt": "a fox", "width": 64, "height": 64,
                                "loras": ["kontext-style"]}, None, job_type=KLEIN_TXT,
                     accept="application/json")
    assert reply.status_code == 400, reply.text
    assert job_of(reply)["error"] == (
        "config.loras[0].name: LoRA 'kontext-style' is a FLUX.1 (Kontext [dev]) LoRA and "
        "this job runs on klein-4b (FLUX.2 [klein]): a LoRA of one model family does not "
        "load on the other")
    reply = post_job(live.url, {"prompt": "add a hat", "loras": ["klein-style"]},
                     gradient_png(256, 256), job_type=DEV, accept="application/json")
    assert reply.status_code == 400
    assert "'klein-style' is a FLUX.2 [klein] LoRA and this job runs on kontext-dev" \
        in job_of(reply)["error"]
    assert engine.requests == []  # nothing ran
