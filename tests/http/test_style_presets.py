"""Every style preset changes what reaches the pipeline and keeps the user's instruction."""

import typing

import httpx2
import pytest
from helpers.fake_engine import FakeEngine
from helpers.http import DEV
from helpers.images import image_bytes

from server.wire.models import StylePreset
from server.wire.presets import STYLE_LOOKS, apply_style

PRESETS = typing.get_args(StylePreset)
INSTRUCTION = "Add a bowler hat to the man"


def test_no_preset_leaves_the_prompt_alone():
    assert apply_style(INSTRUCTION, None) == INSTRUCTION


def test_the_seventeen_templates_are_distinct():
    prompts = {apply_style(INSTRUCTION, preset) for preset in PRESETS}
    assert len(prompts) == len(PRESETS) == 17


@pytest.fixture(scope="module")
def recording_server():
    from helpers.live_server import start_server
    from helpers.servers import make_settings

    from server.api.app import create_app

    engine = FakeEngine()
    live = start_server(create_app(make_settings(), engine))
    yield live, engine
    live.stop()


def post_job(url: str, config: dict) -> httpx2.Response:
    files = [("job", ("job.json", httpx2.Request("POST", "/", json={"type": DEV, "config": config})
                      .content, "application/json")),
             ("input", ("in.png", image_bytes(512, 512), "image/png"))]
    return httpx2.post(f"{url}/v2/job", files=files, headers={"Accept": "application/json"},
                      timeout=30)


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_reaches_the_pipeline_with_the_instruction(recording_server, preset):
    live, engine = recording_server
    reply = post_job(live.url, {"prompt": INSTRUCTION, "style_preset": preset, "steps": 1})
    assert reply.status_code == 200, reply.text
    assert reply.json()["config"]["style_preset"] == preset
    prompt = engine.requests[-1].prompt
    assert prompt != INSTRUCTION
    assert prompt.startswith(INSTRUCTION)
    # The template names the look in concrete words, not just the preset's name.
    assert STYLE_LOOKS[preset].split(":")[0] in prompt
