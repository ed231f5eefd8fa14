"""Model families: the --models and --model-weights settings, which family a job type runs
on, klein's sizes, and which family a LoRA file is for."""

import pytest
from pydantic import ValidationError

from pipelines.contract import EngineInfo, klein_input_size
from pipelines.loras.formats import lora_family
from server.engine_build import served_models, weights_for
from server.jobs.backends.local import model_for
from server.settings import Settings


def test_models_and_weights_settings_split_commas_and_refuse_unknown_names():
    settings = Settings(models="kontext-dev, klein-4b",
                        model_weights="klein-4b=/m/klein,klein-9b=org/FLUX.2-klein-9B")
    assert settings.models == ["kontext-dev", "klein-4b"]
    assert weights_for(settings, "klein-9b") == "org/FLUX.2-klein-9B"
    assert Settings().models == ["kontext-dev"]
    with pytest.raises(ValidationError, match="unknown model 'klein-2b'"):
        Settings(models=["klein-2b"])
    with pytest.raises(ValidationError, match="unknown model 'sdxl'"):
        Settings(model_weights=["sdxl=/m"])


def test_all_means_every_family_with_weights_or_every_family_in_the_demo():
    assert served_models(Settings(models=["all"], demo=True)) == [
        "kontext-dev", "klein-4b", "klein-9b"]
    given = Settings(models=["all"], weights="/k", model_weights=["klein-9b=/n"])
    assert served_models(given) == ["kontext-dev", "klein-9b"]
    # --model-weights kontext-dev=... stands in for --weights.
    assert weights_for(Settings(model_weights=["kontext-dev=/a"]), "kontext-dev") == "/a"


def test_the_unversioned_klein_types_run_on_4b_unless_only_9b_is_served():
    assert model_for("klein", ("kontext-dev", "klein-4b", "klein-9b")) == "klein-4b"
    assert model_for("klein", ("klein-9b",)) == "klein-9b"
    assert model_for("klein", ("kontext-dev",)) == "klein-4b"  # then refused: not served
    assert model_for(None, ("klein-4b",)) == "kontext-dev"


def test_served_families_of_one_engine_and_of_a_set():
    one = EngineInfo(model="m", device="cpu", dtype="float32", demo=True, family="klein-4b")
    assert one.served() == ("klein-4b",) and one.part("kontext-dev") is None
    both = EngineInfo(model="m", device="cpu", dtype="float32", demo=True,
                      models=(EngineInfo("a", "cpu", "float32", True),
                              EngineInfo("b", "cpu", "float32", True, family="klein-9b")))
    assert both.served() == ("kontext-dev", "klein-9b") and both.part("klein-9b").model == "b"


@pytest.mark.parametrize(("size", "fed"), [
    ((640, 480), (640, 480)), ((650, 490), (640, 480)), ((2048, 1024), (1440, 720)),
])
def test_klein_feeds_inputs_at_most_1024_squared_in_multiples_of_16(size, fed):
    assert klein_input_size(*size) == fed


def test_a_lora_is_klein_by_its_flux2_modules_or_its_claim():
    flux1 = ["transformer.single_transformer_blocks.0.attn.to_q.lora_A.weight"]
    flux2 = ["transformer.single_transformer_blocks.0.attn.to_qkv_mlp_proj.lora_A.weight"]
    assert lora_family(flux1, None) == "kontext-dev"
    assert lora_family(flux2, None) == "klein"
    assert lora_family(flux1, "FLUX.2-klein-4B") == "klein"
