"""The AI SDK's official provider (`@ai-sdk/prodia`) against our server, unchanged.

Its image model (`generateImage`) sends JSON (no input image) with `Accept:
multipart/form-data; image/png` and `?price=true`, so it fits the txt2img job types. Its
language model (`generateText` with an image file part) is its only way to send an input
image: multipart with `include_messages: true` in every config and `Accept:
multipart/form-data` (JPEG), so it is how the AI SDK edits.
"""

import base64
import json

import pytest
from helpers.fake_engine import FakeEngine
from helpers.http import image_of, post_job
from helpers.images import gradient_png
from helpers.js_client import run_ai_sdk_edit, run_ai_sdk_image

pytestmark = pytest.mark.js

PRO_TXT = "inference.flux-kontext.pro.txt2img.v2"
PRO_IMG = "inference.flux-kontext.pro.img2img.v2"
DEV = "inference.flux-fast.dev-kontext.img2img.v1"
UPSTREAM_TOKEN = "srv-upstream-token-ai-sdk"


@pytest.fixture
def photo(tmp_path):
    path = tmp_path / "photo.png"
    path.write_bytes(gradient_png(640, 480))
    return path


def edited(result: dict) -> dict:
    """The one JPEG file the SDK returned (it asks for multipart, so JPEG)."""
    assert result["ok"], result
    (file,) = result["files"]
    assert file["mediaType"] == "image/jpeg" and file["bytes"] > 500
    return file


def test_generate_image_round_trips(serve):
    engine = FakeEngine()
    live = serve(engine, fallback="local")
    result = run_ai_sdk_image(live.v2, PRO_TXT, "a lighthouse at dusk", seed=5)
    assert result["ok"], result
    assert result["mediaType"] == "image/png" and result["bytes"] > 1000
    metadata = result["metadata"]
    assert metadata["seed"] == 5 and metadata["dollars"] == 0
    assert engine.requests[-1].seed == 5 and engine.requests[-1].image is None


def test_generate_image_size_is_the_shape_of_a_pro_job(serve, fake, monkeypatch):
    # generateImage sends its `size` as width/height: on [pro] it is the shape (aspect_ratio).
    engine = FakeEngine()
    local = serve(engine, fallback="local")
    assert run_ai_sdk_image(local.v2, PRO_TXT, "a lighthouse", size="1024x768")["ok"]
    assert (engine.requests[-1].width, engine.requests[-1].height) == (1184, 880)  # ~4:3
    fake.reset()
    monkeypatch.setenv("TEST_AI_SDK_UPSTREAM", UPSTREAM_TOKEN)
    forwarded = serve(upstream="hosted", hosted_url=f"{fake.url()}/v2",
                      hosted_token_env="TEST_AI_SDK_UPSTREAM", upstream_ca_file=fake.ca_file,
                      upstream_retry_budget=0)
    assert run_ai_sdk_image(forwarded.v2, PRO_TXT, "a lighthouse", size="1024x768")["ok"]
    (seen,) = fake.requests("hosted")
    config = json.loads(seen.form["job"])["config"]
    assert config["aspect_ratio"] == "4:3" and "width" not in config and "height" not in config


def test_validation_error_reaches_the_sdk_with_our_message(serve):
    live = serve(FakeEngine(), fallback="local")
    result = run_ai_sdk_image(live.v2, PRO_TXT, "ab")
    assert not result["ok"] and result["statusCode"] == 400
    # The SDK asks for multipart but reads errors only from JSON (its provider's
    # prodiaFailedResponseHandler: `error` becomes the message): it gets the failed job as
    # JSON, so its users see our words, not "Bad Request".
    assert result["message"] == "config.prompt: must be at least 3 characters, got 2"
    assert json.loads(result["responseBody"])["state"]["current"] == "failed"


def test_a_503s_reason_reaches_the_sdks_users(serve):
    # [pro] with no upstream and no fallback: 503, which the SDK retries (3 attempts in
    # all), then throws with the last error's message: ours, naming what to configure.
    result = run_ai_sdk_image(serve(FakeEngine()).v2, PRO_TXT, "a lighthouse at dusk")
    assert not result["ok"] and result["errorClass"] == "RetryError", result
    assert result["message"].startswith("Failed after 3 attempts. Last error: ")
    assert "no upstream is configured" in result["message"]
    assert "--fallback local" in result["message"]


def test_other_clients_asking_for_multipart_still_get_multipart_failures(serve):
    reply = post_job(serve(FakeEngine()).url, {"prompt": "ab"}, gradient_png(),
                     accept="multipart/form-data; image/png")
    assert reply.status_code == 400
    assert reply.headers["content-type"].startswith("multipart/form-data")


def test_generate_text_edits_on_dev_kontext(serve, photo):
    engine = FakeEngine()
    live = serve(engine)
    result = run_ai_sdk_edit(live.v2, DEV, "add a bowler hat", photo, "image/png")
    edited(result)
    request = engine.requests[-1]
    assert request.prompt == "add a bowler hat" and request.image.size == (640, 480)
    assert (request.width, request.height) == (1024, 1024)
    assert result["metadata"]["dollars"] == 0 and "seed" in result["metadata"]


def test_generate_text_aspect_ratio_sizes_a_dev_kontext_edit(serve, photo):
    engine = FakeEngine()
    live = serve(engine)
    result = run_ai_sdk_edit(live.v2, DEV, "add a bowler hat", photo, "image/png",
                             aspect_ratio="16:9")
    edited(result)
    assert (engine.requests[-1].width, engine.requests[-1].height) == (1040, 592)


def test_generate_text_edits_on_pro_forwarded_upstream(serve, fake, photo, monkeypatch):
    fake.reset()
    monkeypatch.setenv("TEST_AI_SDK_UPSTREAM", UPSTREAM_TOKEN)
    live = serve(upstream="hosted", hosted_url=f"{fake.url()}/v2",
                 hosted_token_env="TEST_AI_SDK_UPSTREAM", upstream_ca_file=fake.ca_file,
                 upstream_retry_budget=0)
    result = run_ai_sdk_edit(live.v2, PRO_IMG, "make it blue", photo, "image/png")
    edited(result)
    (seen,) = fake.requests("hosted")
    config = json.loads(seen.form["job"])["config"]
    # Forwarded as the client sent it (the hosted API takes include_messages itself).
    assert config["include_messages"] is True and config["prompt"] == "make it blue"
    assert seen.form["input"] == photo.read_bytes()


def test_generate_text_edits_on_pro_with_the_local_fallback(serve, photo):
    engine = FakeEngine()
    live = serve(engine, fallback="local")
    result = run_ai_sdk_edit(live.v2, PRO_IMG, "make it blue", photo, "image/png")
    file = edited(result)
    assert engine.requests[-1].image.size == (640, 480)
    assert image_of(base64.b64decode(file["base64"])).format == "JPEG"
