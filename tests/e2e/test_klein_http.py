"""FLUX.2 [klein] through a real server: side by side with Kontext [dev] on one engine."""

import json

import httpx2
import pytest
from helpers.async_api import get, submit, wait_state
from helpers.http import image_of, job_of, post_images, post_job
from helpers.images import gradient_png
from helpers.marks import assert_xmp, exiftool

K4_TXT = "inference.flux-2.klein.4b.txt2img.v1"
K4_IMG = "inference.flux-2.klein.4b.img2img.v1"
K9_IMG = "inference.flux-2.klein.9b.img2img.v1"
KLEIN_TXT = "inference.flux-2.klein.txt2img.v1"


@pytest.fixture
def both(serve, kontext_and_klein):
    return serve(kontext_and_klein)


def test_readyz_lists_each_model_and_its_state(both):
    body = httpx2.get(f"{both.url}/readyz").json()
    models = {entry["name"]: entry for entry in body["models"]}
    assert set(models) == {"kontext-dev", "klein-4b"}
    assert models["klein-4b"]["state"] == "ready"
    assert models["klein-4b"]["licence"] == "Apache-2.0"
    assert models["kontext-dev"]["model"].startswith("FLUX.1-Kontext-dev")


def test_txt2img_at_the_asked_size_then_kontext_unchanged(both):
    reply = post_job(both.url, {"prompt": "a red fox", "width": 96, "height": 64, "seed": 5},
                     None, accept="image/png", job_type=K4_TXT)
    assert reply.status_code == 200, reply.text
    assert image_of(reply.content).size == (96, 64)
    again = post_job(both.url, {"prompt": "a red fox", "width": 96, "height": 64, "seed": 5},
                     None, accept="image/png", job_type=KLEIN_TXT)  # unversioned: klein-4b
    assert again.content == reply.content
    dev = post_job(both.url, {"prompt": "add a hat", "width": 512, "height": 512, "steps": 2},
                   gradient_png(320, 256), accept="application/json")
    assert dev.status_code == 200, dev.text
    job = job_of(dev)
    assert job["metrics"]["model"] == "kontext-dev"
    assert job["served_by"]["model"].startswith("FLUX.1-Kontext-dev")
    metrics = httpx2.get(f"{both.url}/metrics").text
    assert f'job_type="{K4_TXT}",model="klein-4b"' in metrics
    assert 'kontext_denoise_step_seconds_count{device="cpu",model="klein-4b"} 2.0' in metrics


def test_img2img_takes_two_references(both):
    reply = post_images(both.url, {"prompt": "the cat wears the hat", "seed": 1},
                        [gradient_png(320, 256), gradient_png(256, 256)],
                        accept="application/json", job_type=K4_IMG)
    assert reply.status_code == 200, reply.text
    job = job_of(reply)
    assert job["config"]["steps"] == 4  # the distilled default
    assert job["metrics"]["inputs"] == [{"width": 320, "height": 256},
                                        {"width": 256, "height": 256}]
    assert job["served_by"]["model"].startswith("FLUX.2-klein-4B")


@pytest.mark.parametrize(("job_type", "config", "images", "field"), [
    (K4_TXT, {"prompt": "a fox", "guidance": 3.5}, 0, "config.guidance: unknown field"),
    (K4_TXT, {"prompt": "a fox", "width": 100}, 0, "config.width: must be a multiple of 16"),
    (K4_TXT, {"prompt": "a fox"}, 1, "takes no input image"),
    (K4_IMG, {"prompt": "a fox"}, 0, "needs 1 input image"),
    (K4_IMG, {"prompt": "a fox"}, 5, "takes at most 4 input images"),
])
def test_refusals_name_the_field(both, job_type, config, images, field):
    inputs = [gradient_png(256 + 16 * i, 256) for i in range(images)]
    reply = post_images(both.url, config, inputs, job_type=job_type,
                        accept="application/json") if inputs else \
        post_job(both.url, config, None, job_type=job_type, accept="application/json")
    assert reply.status_code == 400
    assert field in job_of(reply)["error"]


def test_a_family_not_served_is_503_naming_the_flag(serve, tiny_engine, tiny_klein_engine):
    kontext_only = serve(tiny_engine)
    reply = post_images(kontext_only.url, {"prompt": "a fox"}, [gradient_png(256, 256)],
                        job_type=K9_IMG, accept="application/json")
    assert reply.status_code == 503
    assert "klein-9b" in job_of(reply)["error"] and "--models" in job_of(reply)["error"]
    klein_only = serve(tiny_klein_engine)
    reply = post_job(klein_only.url, {"prompt": "add a hat"}, gradient_png(256, 256),
                     accept="application/json")
    assert reply.status_code == 503 and "kontext-dev" in job_of(reply)["error"]


def test_async_klein_job_carries_the_disclosure_marks(both, tmp_path):
    reply = submit(both.url, {"prompt": "a lighthouse", "width": 64, "height": 80},
                   None, job_type=K4_TXT, accept="image/png")
    assert reply.status_code == 201, reply.text
    job_id = reply.json()["id"]
    wait_state(both.url, job_id, "processed")
    record = json.loads(get(both.url, job_id, "job.json").text)
    assert record["metrics"]["model"] == "klein-4b"
    (name,) = get(both.url, job_id, "output").json()
    output = get(both.url, job_id, f"output/{name}").content
    (tags,) = exiftool(tmp_path, output)
    assert_xmp(tags, edited=False, prompt=None, model="FLUX.2 [klein] 4B")


def test_demo_all_builds_every_family_from_the_settings(tiny_dir):
    from helpers.live_server import start_server
    from helpers.servers import make_settings

    from server.api.app import create_app

    # `--demo --models all` as `kontext serve` builds it (tiny checkpoints, one engine).
    app = create_app(make_settings(demo=True, models=["all"], demo_dir=tiny_dir,
                                   device="cpu"))
    live = start_server(app, wait_ready=True)
    try:
        names = [entry["name"] for entry in httpx2.get(f"{live.url}/readyz").json()["models"]]
        assert names == ["kontext-dev", "klein-4b", "klein-9b"]
        reply = post_job(live.url, {"prompt": "a fox", "width": 64, "height": 64},
                         None, job_type="inference.flux-2.klein.9b.txt2img.v1",
                         accept="application/json")
        assert reply.status_code == 200, reply.text
        assert job_of(reply)["served_by"]["model"].startswith("FLUX.2-klein-9B")
    finally:
        live.stop()


def test_a_child_process_per_device_carries_both_families(tiny_dir, tmp_path):
    from helpers.live_server import start_server
    from helpers.servers import make_settings

    from server.api.app import create_app
    from server.engine_build import build_local_engines

    # `--devices cpu`: the model set is built in the device's own process, unchanged.
    settings = make_settings(demo=True, demo_dir=tiny_dir, devices=["cpu"],
                             models=["kontext-dev", "klein-4b"],
                             results_dir=tmp_path / "results")
    engines, labels = build_local_engines(settings)
    live = start_server(create_app(settings, engines, labels=labels), wait_ready=False)
    try:
        live.wait_ready(timeout=240)
        body = httpx2.get(f"{live.url}/readyz").json()
        assert [entry["name"] for entry in body["models"]] == ["kontext-dev", "klein-4b"]
        reply = post_images(live.url, {"prompt": "a fox", "steps": 1},
                            [gradient_png(256, 256), gradient_png(320, 256)],
                            job_type=K4_IMG, accept="application/json")
        assert reply.status_code == 200, reply.text
        assert job_of(reply)["served_by"]["device"] == "cpu"
        dev = post_job(live.url, {"prompt": "add a hat", "width": 512, "height": 512,
                                  "steps": 1}, gradient_png(256, 256),
                       accept="application/json")
        assert dev.status_code == 200 and job_of(dev)["metrics"]["model"] == "kontext-dev"
    finally:
        live.stop()


def test_the_content_filter_screens_klein_jobs(serve, kontext_and_klein, tiny_classifier_dir):
    from helpers.images import image_bytes
    from helpers.tiny_classifier import BLUE, RED

    live = serve(kontext_and_klein, safety="block", safety_model=str(tiny_classifier_dir))
    refused = post_job(live.url, {"prompt": "make her naked", "width": 64, "height": 64},
                       None, job_type=K4_TXT, accept="application/json")
    assert refused.status_code == 400
    assert job_of(refused)["error"] == "prompt: refused by the content filter (category ncii)"
    red = post_images(live.url, {"prompt": "a fox", "width": 64, "height": 64},
                      [image_bytes(256, 256, color=BLUE), image_bytes(256, 256, color=RED)],
                      job_type=K4_IMG, accept="application/json")
    assert red.status_code == 400
    assert job_of(red)["error"] == "input[1]: refused by the content filter (category nsfw)"
