"""The AI SDK's official provider (`@ai-sdk/prodia` with `generateImage`) against our server.

Its image model sends JSON (no input image) with `Accept: multipart/form-data; image/png` and
`?price=true`, so it fits the txt2img job types; here a [pro] txt2img job served by the local
[dev] fallback.
"""

import pytest
from helpers.fake_engine import FakeEngine
from helpers.js_client import run_ai_sdk_image

pytestmark = pytest.mark.js

PRO_TXT = "inference.flux-kontext.pro.txt2img.v2"


def test_generate_image_round_trips(serve):
    engine = FakeEngine()
    live = serve(engine, fallback="local")
    result = run_ai_sdk_image(live.v2, PRO_TXT, "a lighthouse at dusk", seed=5)
    assert result["ok"], result
    assert result["mediaType"] == "image/png" and result["bytes"] > 1000
    metadata = result["metadata"]
    assert metadata["seed"] == 5 and metadata["dollars"] == 0
    assert engine.requests[-1].seed == 5 and engine.requests[-1].image is None


def test_validation_error_reaches_the_sdk_with_our_message(serve):
    live = serve(FakeEngine(), fallback="local")
    result = run_ai_sdk_image(live.v2, PRO_TXT, "ab")
    assert not result["ok"] and result["statusCode"] == 400
    # As the contract says, a client accepting multipart gets the failed job as multipart;
    # the SDK parses only JSON errors, so its message is the status text and our error is
    # in the response body it keeps.
    assert "config.prompt: must be at least 3 characters, got 2" in result["responseBody"]
