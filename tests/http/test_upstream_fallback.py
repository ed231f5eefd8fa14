"""[pro]/[max] jobs with no upstream: 503 by default, or run on [dev] with --fallback local."""

from __future__ import annotations

import dataclasses
import json

import pytest
from helpers.async_api import submit
from helpers.fake_engine import FakeEngine
from helpers.http import MAX_IMG, MAX_TXT, PRO_IMG, PRO_TXT, image_of, multipart_parts, post_job
from helpers.images import gradient_png, image_bytes

from server.jobs.backends.local import DEMO_NOTICE


def test_no_upstream_is_503_naming_the_configuration(serve):
    live = serve()
    answer = post_job(live.url, {"prompt": "a red fox"}, None, job_type=PRO_TXT,
                      accept="application/json")
    assert answer.status_code == 503
    error = answer.json()["error"]
    assert "--upstream hosted" in error and "--fallback local" in error
    assert "PRODIA_TOKEN" in error and "BFL_API_KEY" in error


@pytest.mark.parametrize("job_type", [PRO_TXT, PRO_IMG])
def test_no_upstream_refuses_an_async_job_at_post_like_a_synchronous_one(serve, job_type):
    """Nowhere to run is known before the job exists: 503 at POST, never 201 then failed."""
    live = serve()
    image = gradient_png(512, 384) if job_type == PRO_IMG else None
    answer = submit(live.url, {"prompt": "a red fox"}, image, job_type=job_type,
                    accept="application/json")
    assert answer.status_code == 503, answer.text
    assert "--fallback local" in answer.json()["error"]
    sync = post_job(live.url, {"prompt": "a red fox"}, image, job_type=job_type,
                    accept="application/json")
    assert (sync.status_code, sync.json()["error"]) == (503, answer.json()["error"])


def test_no_upstream_still_validates_first(serve):
    live = serve()
    answer = post_job(live.url, {"prompt": "a fox"}, image_bytes(100, 100), job_type=PRO_IMG,
                      accept="application/json")
    assert answer.status_code == 400
    assert "at least 256 px" in answer.json()["error"]


@pytest.mark.parametrize("job_type", [PRO_TXT, MAX_TXT])
def test_fallback_txt2img_runs_on_dev_without_an_image(serve, job_type):
    engine = FakeEngine()
    engine.info = dataclasses.replace(engine.info, model="FLUX.1-Kontext-dev (tiny random "
                                      "demo checkpoint)", demo=True)
    live = serve(engine=engine, fallback="local", fallback_steps=3)
    config = {"prompt": "a red fox", "aspect_ratio": "16:9", "seed": 5,
              "prompt_upsampling": True}
    answer = post_job(live.url, config, None, job_type=job_type,
                      accept="multipart/form-data; image/png")
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-kontext-served-by"] == "local-dev-fallback"
    parts = multipart_parts(answer)
    job = json.loads(parts["job"][1])
    # Where it ran, as the engine names itself: a demo checkpoint is never called the model.
    assert job["served_by"] == {
        "backend": "local-dev-fallback", "model": engine.info.model, "device": "cpu",
        "width": 1392, "height": 752, "steps": 3,
        "not_applied": ["prompt_upsampling", "safety_tolerance"]}
    assert job["notice"] == DEMO_NOTICE
    assert job["config"]["safety_tolerance"] == 4
    assert image_of(parts["output"][1]).size == (1392, 752)
    (request,) = engine.requests
    assert request.image is None and request.seed == 5 and request.steps == 3
    assert request.prompt == "a red fox"


@pytest.mark.parametrize("job_type", [PRO_IMG, MAX_IMG])
def test_fallback_img2img_keeps_the_input_ratio(serve, job_type):
    engine = FakeEngine()
    live = serve(engine=engine, fallback="local")
    answer = post_job(live.url, {"prompt": "make it blue"}, gradient_png(640, 480),
                      job_type=job_type, accept="image/jpeg")
    assert answer.status_code == 200, answer.text
    assert image_of(answer.content).size == (1184, 880)
    (request,) = engine.requests
    assert request.image is not None and request.image.size == (640, 480)
    assert (request.width, request.height) == (1184, 880) and request.steps == 30


def test_fallback_txt2img_on_the_real_tiny_pipeline(serve, tiny_engine):
    live = serve(engine=tiny_engine, fallback="local", fallback_steps=1)
    answer = post_job(live.url, {"prompt": "a red fox", "aspect_ratio": "1:1"}, None,
                      job_type=PRO_TXT, accept="application/json")
    assert answer.status_code == 200, answer.text
    job = answer.json()
    assert job["state"]["current"] == "completed"
    assert job["served_by"]["backend"] == "local-dev-fallback"
    assert job["notice"].startswith("demo mode")


def test_serve_flags_reach_the_settings(tmp_path):
    from server.cli.main import build_parser
    from server.cli.settings_flags import settings_from_args

    ca = tmp_path / "ca.pem"
    ca.write_text("unused")
    args = build_parser().parse_args([
        "serve", "--upstream", "bfl", "--bfl-url", "https://api.eu.bfl.ai",
        "--bfl-key-env", "MY_KEY", "--upstream-hosts", "bfl.ai,example.org",
        "--upstream-ca-file", str(ca), "--upstream-timeout", "2.5",
        "--upstream-retry-budget", "0", "--upstream-max-in-flight", "3",
        "--fallback", "local", "--fallback-steps", "8"])
    settings = settings_from_args(args)
    assert (settings.upstream, settings.bfl_url, settings.bfl_key_env) == \
        ("bfl", "https://api.eu.bfl.ai", "MY_KEY")
    assert settings.upstream_hosts == ["bfl.ai", "example.org"]
    assert settings.upstream_ca_file == ca and settings.upstream_timeout == 2.5
    assert (settings.upstream_retry_budget, settings.upstream_max_in_flight) == (0, 3)
    assert (settings.fallback, settings.fallback_steps) == ("local", 8)
