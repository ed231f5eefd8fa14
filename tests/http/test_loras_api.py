"""LoRAs over HTTP with the fake engine's LoRA folder: the `loras` wire rules and echo, the
folder check before the engine, GET /v2/loras, [pro]/[max] refusals, metrics, OpenAPI."""

from __future__ import annotations

import httpx2
import pytest
from helpers.async_api import submit, wait_state
from helpers.fake_engine import FakeEngine
from helpers.fake_loras import FakeLoras, fake_entry
from helpers.http import DEV, PRO_IMG, PRO_TXT, image_of, job_of, multipart_parts, post_job
from helpers.images import image_bytes
from helpers.live_server import start_server
from helpers.servers import make_settings
from prometheus_client.parser import text_string_to_metric_families

from pipelines.contract import LoraChoice
from server.api.app import create_app

PNG = image_bytes(320, 256)
CONFIG = {"prompt": "make it red", "width": 512, "height": 512, "steps": 2, "seed": 5}
SDXL = "not a FLUX transformer LoRA: SDXL UNet LoRA keys (down_blocks)"


def folder() -> FakeLoras:
    return FakeLoras([
        fake_entry("style/red"), fake_entry("blue", rank=16, layout="kohya", base_model="flux1"),
        fake_entry("twin"),
        fake_entry("bad/sdxl", loads=False, problem=SDXL, base_model="sdxl_base_v1-0"),
    ])


@pytest.fixture(scope="module")
def live():
    engine = FakeEngine(loras=folder())
    server = start_server(create_app(make_settings(), engine))
    yield server
    server.stop()


def edit(live, loras=None, expect: int = 200, **config) -> dict:
    config = {**CONFIG, **config, **({} if loras is None else {"loras": loras})}
    reply = post_job(live.url, config, PNG, "multipart/form-data; image/png")
    assert reply.status_code == expect, reply.text
    return job_of(reply) | {"_output": multipart_parts(reply).get("output", (None, None))[1]}


def test_names_and_objects_reach_the_engine_echoed_as_sent_with_metrics(live):
    engine = live.kontext.engines.workers[0].engine
    base = edit(live)
    assert "loras" not in base["config"] and "loras" not in base["metrics"]
    sent = ["style/red", {"name": "blue", "scale": -0.5}, {"name": "twin"}]
    job = edit(live, sent)
    # Echoed as sent: a name stays a name; an object gets its default scale filled in.
    assert job["config"]["loras"] == ["style/red", {"name": "blue", "scale": -0.5},
                                      {"name": "twin", "scale": 1.0}]
    assert engine.requests[-1].loras == (LoraChoice("style/red", 1.0), LoraChoice("blue", -0.5),
                                         LoraChoice("twin", 1.0))
    loras = job["metrics"]["loras"]
    assert loras["applied"] == [{"name": "blue", "scale": -0.5},  # slot order: by name
                                {"name": "style/red", "scale": 1.0},
                                {"name": "twin", "scale": 1.0}]
    assert loras["switch_seconds"] >= 0
    assert job["_output"] != base["_output"]
    again = edit(live, sent)["metrics"]["loras"]
    assert (again["cache_hits"], again["cache_misses"]) == (3, 0)
    # Scale 0 is no LoRA: the same image as none at all.
    zero = edit(live, [{"name": "style/red", "scale": 0}])
    assert zero["metrics"]["loras"]["applied"] == []
    assert image_of(zero["_output"]).tobytes() == image_of(base["_output"]).tobytes()


@pytest.mark.parametrize(("loras", "error"), [
    (["a", "b", "c", "d"], "config.loras: must have at most 3 entries, got 4"),
    (["blue", {"name": "blue", "scale": 0.5}],
     "config.loras[1].name: 'blue' is listed twice (also entry 0); give it once with the "
     "scale you want"),
    (["blue", {"name": "style/red", "scale": 2.5}],
     "config.loras[1].scale: must be at most 2, got 2.5"),
    ([{"name": "blue", "scale": "1"}], "config.loras[0].scale: must be a number, got '1'"),
    ([5], 'config.loras[0]: must be a LoRA name or an object {"name", "scale"}, got 5'),
    ("blue", "config.loras: must be a list, got 'blue'"),
    ([{"name": "blue", "weight": 1}], "config.loras[0].weight: unknown field"),
    ([{"scale": 1}], "config.loras[0].name: is required"),
    ([" "], "config.loras[0].name: must be a LoRA name: its path in the LoRA folder without "
     ".safetensors (GET /v2/loras lists them), got ' '"),
    # Checked against the folder before the job queues for the engine:
    (["blue", "nope"], "config.loras[1].name: unknown LoRA 'nope': this server's LoRA folder "
     "has no such file (GET /v2/loras lists them)"),
    ([{"name": "bad/sdxl", "scale": 0}], f"config.loras[0].name: LoRA 'bad/sdxl' cannot be "
     f"used: {SDXL}"),
])
def test_bad_loras_are_400_naming_the_entry_and_never_reach_the_engine(live, loras, error):
    engine = live.kontext.engines.workers[0].engine
    before = len(engine.requests)
    job = edit(live, loras, expect=400)
    assert job["error"] == error
    assert job["state"]["current"] == "failed"
    assert len(engine.requests) == before


def test_the_listing(live):
    reply = httpx2.get(f"{live.url}/v2/loras")
    assert reply.status_code == 200
    listing = reply.json()
    assert {key: listing[key] for key in ("enabled", "problem", "max_per_job", "scale_min",
                                          "scale_max")} == {
        "enabled": True, "problem": None, "max_per_job": 3, "scale_min": -2, "scale_max": 2}
    assert [entry["name"] for entry in listing["loras"]] == ["bad/sdxl", "blue", "style/red",
                                                             "twin"]
    sdxl, blue = listing["loras"][0], listing["loras"][1]
    assert blue == {"name": "blue", "size_bytes": 1000, "layout": "kohya", "rank": 16,
                    "base_model": "flux1", "loads": True, "problem": None, "verified": False,
                    "warnings": []}
    assert (sdxl["loads"], sdxl["problem"], sdxl["base_model"]) == (False, SDXL,
                                                                    "sdxl_base_v1-0")
    # A file dropped into the folder is listed, and usable, at once.
    live.kontext.engines.workers[0].engine.loras.add(fake_entry("new/relight"))
    assert "new/relight" in [e["name"] for e in httpx2.get(f"{live.url}/v2/loras").json()["loras"]]
    assert edit(live, ["new/relight"])["metrics"]["loras"]["cache_misses"] == 1


def test_the_listing_needs_the_token_like_the_job_routes(serve):
    live = serve(FakeEngine(loras=folder()), tokens=["s3cret-token-0f1e"])
    refused = httpx2.get(f"{live.url}/v2/loras")
    assert refused.status_code == 401 and "token is invalid" in refused.text
    reply = httpx2.get(f"{live.url}/v2/loras",
                       headers={"Authorization": "Bearer s3cret-token-0f1e"})
    assert reply.status_code == 200 and len(reply.json()["loras"]) == 4


def test_without_a_lora_folder_the_listing_says_how_and_jobs_with_loras_are_400(serve):
    live = serve(FakeEngine())
    listing = httpx2.get(f"{live.url}/v2/loras").json()
    assert listing["enabled"] is False and listing["loras"] == []
    assert "--lora-dir" in listing["problem"] and "KONTEXT_LORA_DIR" in listing["problem"]
    reply = post_job(live.url, {**CONFIG, "loras": ["blue"]}, PNG)
    assert reply.status_code == 400
    assert reply.json()["error"] == ("config.loras: this server has no LoRA folder: start it "
                                     "with --lora-dir DIR (environment: KONTEXT_LORA_DIR)")
    assert post_job(live.url, {**CONFIG, "loras": []}, PNG).status_code == 200


def test_a_memory_mode_without_loras_lists_the_folder_and_refuses_lora_jobs(serve):
    problem = "LoRAs need --memory-mode full; in 24gb mode ..."
    live = serve(FakeEngine(loras=FakeLoras([fake_entry("blue")], problem=problem)))
    listing = httpx2.get(f"{live.url}/v2/loras").json()
    assert (listing["enabled"], listing["problem"]) == (False, problem)
    assert [entry["name"] for entry in listing["loras"]] == ["blue"]
    reply = post_job(live.url, {**CONFIG, "loras": ["blue"]}, PNG)
    assert (reply.status_code, reply.json()["error"]) == (400, f"config.loras: {problem}")


@pytest.mark.parametrize("job_type", [PRO_IMG, PRO_TXT])
def test_pro_and_max_refuse_loras_wherever_they_would_run(serve, job_type):
    live = serve(FakeEngine(loras=folder()), fallback="local")
    image = PNG if job_type == PRO_IMG else None
    config = {"prompt": "make it red", "loras": ["blue"]}
    reply = post_job(live.url, config, image, job_type=job_type)
    assert reply.status_code == 400
    assert reply.json()["error"] == (
        "config.loras: [pro]/[max] take no LoRAs: they run on Black Forest Labs' hosted "
        "models, whose API has no LoRA parameter; send LoRAs with " + DEV)
    assert live.kontext.engines.workers[0].engine.requests == []
    # An empty list asks for nothing: accepted, and not echoed (nor forwarded).
    done = post_job(live.url, {**config, "loras": []}, image, accept="application/json",
                    job_type=job_type)
    assert done.status_code == 200 and "loras" not in done.json()["config"]


def test_metrics_count_the_adapter_cache_and_time_only_jobs_with_loras(serve):
    live = serve(FakeEngine(loras=folder()))
    for loras in (["blue"], ["blue", "twin"], None):
        assert post_job(live.url, {**CONFIG, **({"loras": loras} if loras else {})},
                        PNG).status_code == 200
    text = httpx2.get(f"{live.url}/metrics").text
    found = {sample.name: sample.value for family in text_string_to_metric_families(text)
             for sample in family.samples}
    assert (found["kontext_lora_cache_hits_total"], found["kontext_lora_cache_misses_total"],
            found["kontext_lora_cache_entries"]) == (1, 2, 2)
    assert found["kontext_lora_cache_bytes"] == 200
    assert found["kontext_lora_cache_capacity_bytes"] == 10_000
    assert found["kontext_lora_switch_seconds_count"] == 2  # the no-LoRA job is not timed


def test_a_server_without_a_lora_folder_exports_no_cache_metrics(serve):
    live = serve(FakeEngine())
    assert "kontext_lora_cache" not in httpx2.get(f"{live.url}/metrics").text


def test_openapi_documents_the_field_and_the_route(live):
    spec = httpx2.get(f"{live.url}/openapi.json").json()
    listing = spec["paths"]["/v2/loras"]["get"]
    assert "401" in listing["responses"]
    schema = listing["responses"]["200"]["content"]["application/json"]["schema"]
    assert schema == {"$ref": "#/components/schemas/LoraListing"}
    assert "loras" in spec["components"]["schemas"]["LoraListing"]["required"]
    body = spec["paths"]["/v2/job"]["post"]["requestBody"]["content"]["application/json"]
    dev = next(v for v in body["schema"]["oneOf"] if v["title"] == DEV)
    loras = dev["properties"]["config"]["properties"]["loras"]
    assert loras["anyOf"][0]["maxItems"] == 3 and "GET /v2/loras" in loras["description"]
    # The object form, inlined (no dangling $defs reference).
    spec_of_object = loras["anyOf"][0]["items"]["oneOf"][1]
    assert spec_of_object["properties"]["scale"]["maximum"] == 2


def test_an_async_job_naming_an_unknown_lora_is_refused_before_it_exists(live):
    reply = submit(live.url, {**CONFIG, "loras": ["nope"]}, PNG)
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"] == ("config.loras[0].name: unknown LoRA 'nope': this server's "
                                     "LoRA folder has no such file (GET /v2/loras lists them)")
    good = submit(live.url, {**CONFIG, "loras": ["blue"]}, PNG)
    assert good.status_code == 201, good.text
    wait_state(live.url, good.json()["id"], "processed")
