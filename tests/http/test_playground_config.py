"""/playground/config.json: which job types this server can run, and their form fields."""

from dataclasses import replace

import httpx2
import pytest
from helpers.fake_engine import FakeEngine

from server.api.playground import playground_config
from server.jobs.types import DEV_KONTEXT
from server.metrics import Metrics
from server.settings import Settings
from server.wire.hosted import MAX_TXT2IMG, PRO_IMG2IMG
from server.wire.models import DevKontextConfig
from server.wiring import build_jobs_path, local_engines

HOSTED = [PRO_IMG2IMG, MAX_TXT2IMG]


def entries(settings: Settings) -> dict[str, dict]:
    metrics = Metrics()
    engines = local_engines(settings, FakeEngine(), metrics)
    service = build_jobs_path(settings, engines, metrics).service
    config = playground_config(service, auth_required=False)
    assert config["version"] == 4
    assert config["input_limits"] == {"max_side": 1920, "max_bytes": settings.max_input_bytes}
    return {entry["type"]: entry for entry in config["job_types"]}


def fields(entry: dict) -> dict[str, dict]:
    return {field["name"]: field for field in entry["fields"]}


def test_dev_fields_come_from_the_wire_model():
    dev = entries(Settings())[DEV_KONTEXT]
    assert (dev["runnable"], dev["runs_on"]) == (True, "local")
    assert (dev["min_inputs"], dev["max_inputs"]) == (1, 4)
    assert dev["prompt"] == {"min_length": 3, "max_length": 4096,
                             "description": "The edit instruction."}
    width = fields(dev)["width"]
    schema = DevKontextConfig.model_json_schema()["properties"]["width"]
    assert (width["kind"], width["min"], width["max"], width["step"], width["default"]) == (
        "integer", schema["minimum"], schema["maximum"], schema["multipleOf"], 1024)
    # Left empty, the page asks for the input's shape, by the wire's own size rule.
    assert width["auto"] and fields(dev)["height"]["auto"]
    assert dev["size_from_input"] == {"low": 512, "high": 1040, "unit": 16, "area": 1024**2}
    assert fields(dev)["guidance_scale"]["kind"] == "number"
    seed = fields(dev)["seed"]
    assert (seed["kind"], seed["min"], seed["max"]) == ("seed", "0", str(2**63 - 1))
    preset = fields(dev)["style_preset"]
    assert preset["kind"] == "enum" and preset["optional"] and len(preset["options"]) == 17
    assert list(fields(dev)) == ["style_preset", "width", "height", "steps",
                                 "guidance_scale", "seed", "reference_method", "loras"]
    method = fields(dev)["reference_method"]
    assert (method["kind"], method["options"], method["default"], method["min_inputs"]) == (
        "enum", ["index", "offset", "stitch"], "offset", 2)
    # The LoRA picker: its limits from the wire model, its choices from GET /v2/loras.
    assert fields(dev)["loras"] | {"description": ""} == {
        "name": "loras", "kind": "loras", "label": "LoRAs", "description": "", "default": None,
        "max_items": 3, "list_url": "/v2/loras",
        "scale": {"min": -2, "max": 2, "default": 1, "step": 0.05}}


def test_hosted_fields_per_type():
    found = entries(Settings(fallback="local"))
    img2img, txt2img = fields(found[PRO_IMG2IMG]), fields(found[MAX_TXT2IMG])
    assert list(img2img) == ["aspect_ratio", "safety_tolerance", "prompt_upsampling", "seed"]
    assert (img2img["safety_tolerance"]["max"], txt2img["safety_tolerance"]["max"]) == (2, 6)
    assert (img2img["aspect_ratio"]["default"], txt2img["aspect_ratio"]["default"]) == (
        None, "1:1")
    assert "21:9" in img2img["aspect_ratio"]["rule"]
    assert img2img["prompt_upsampling"] | {"description": ""} == {
        "name": "prompt_upsampling", "kind": "boolean", "label": "Prompt Upsampling",
        "default": False, "description": ""}
    assert [(found[name]["min_inputs"], found[name]["max_inputs"])
            for name in (PRO_IMG2IMG, MAX_TXT2IMG)] == [(1, 1), (0, 0)]
    assert found[PRO_IMG2IMG]["size_from_input"] is None  # its aspect_ratio says the shape


@pytest.mark.parametrize(("settings", "env", "runs_on", "reason"), [
    ({}, {}, None, "--fallback local"),
    ({"fallback": "local"}, {}, "local-fallback", None),
    ({"upstream": "hosted"}, {}, None, "PRODIA_TOKEN"),
    ({"upstream": "hosted"}, {"PRODIA_TOKEN": "t"}, "upstream-hosted", None),
    ({"upstream": "bfl", "bfl_key_env": "MY_KEY"}, {}, None, "MY_KEY"),
    ({"upstream": "bfl", "bfl_key_env": "MY_KEY"}, {"MY_KEY": "k"}, "upstream-bfl", None),
])
def test_hosted_types_are_runnable_only_when_configured(monkeypatch, settings, env, runs_on,
                                                        reason):
    for name in ("PRODIA_TOKEN", "MY_KEY", "BFL_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    found = entries(Settings(**settings))
    assert found[DEV_KONTEXT]["runnable"]
    for name in HOSTED:
        assert (found[name]["runnable"], found[name]["runs_on"]) == (runs_on is not None,
                                                                     runs_on)
        assert (reason is None) == (found[name]["reason"] is None)
        assert reason is None or reason in found[name]["reason"]


def test_served_with_auth_flag(serve, tmp_path):
    live = serve(engine=FakeEngine(), results_dir=tmp_path, tokens=["s3cret-token-0f1e"])
    config = httpx2.get(f"{live.url}/playground/config.json").json()
    assert config["auth_required"] is True
    assert config["default_job_type"] == DEV_KONTEXT
    assert config["output_formats"] == ["jpeg", "png", "webp"]


def test_klein_types_are_offered_only_where_their_model_is_served():
    kontext = entries(Settings())
    klein = kontext["inference.flux-2.klein.4b.img2img.v1"]
    assert not klein["runnable"] and "--models klein-4b" in klein["reason"]
    assert klein["label"] == "FLUX.2 [klein] 4B — edit" and klein["model"] == "klein-4b"
    assert list(fields(klein)) == ["width", "height", "steps", "seed", "safety_tolerance",
                                   "loras"]
    # The server sizes a klein edit from its input: the page leaves the size empty.
    assert klein["size_from_input"] is None and fields(klein)["width"]["auto"]
    assert (fields(klein)["width"]["min"], fields(klein)["width"]["max"]) == (64, 2048)
    assert fields(klein)["steps"]["default"] == 4


def test_a_klein_only_server_offers_klein_first():
    metrics = Metrics()
    engine = FakeEngine()
    engine.info = replace(engine.info, family="klein-4b", model="FLUX.2-klein-4B")
    settings = Settings()
    service = build_jobs_path(settings, local_engines(settings, engine, metrics),
                              metrics).service
    config = playground_config(service, auth_required=False)
    by_type = {entry["type"]: entry for entry in config["job_types"]}
    assert not by_type[DEV_KONTEXT]["runnable"]
    assert by_type["inference.flux-2.klein.txt2img.v1"]["runnable"]
    assert config["default_job_type"] == "inference.flux-2.klein.4b.txt2img.v1"
