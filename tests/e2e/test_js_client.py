"""The official JS client (npm `prodia`, module `prodia/v2`) pointed at our server, unchanged."""

import threading
import time

import pytest
from helpers.fake_engine import FakeEngine
from helpers.http import DEV, post_job
from helpers.images import gradient_png
from helpers.js_client import run_js_job

pytestmark = pytest.mark.js


@pytest.fixture
def png(tmp_path):
    path = tmp_path / "photo.png"
    path.write_bytes(gradient_png(640, 480))
    return path


def test_edit_with_real_pipeline(serve, tiny_engine, png, tmp_path):
    live = serve(tiny_engine)
    out = tmp_path / "out.jpg"
    result = run_js_job(live.v2, DEV, {"prompt": "add a bowler hat", "width": 512,
                                       "height": 544, "steps": 2}, [png], output_path=out)
    assert result["ok"], result
    assert result["job"]["state"]["current"] == "completed"
    assert isinstance(result["job"]["config"]["seed"], int)
    from PIL import Image

    assert Image.open(out).format == "JPEG" and Image.open(out).size == (512, 544)


@pytest.mark.parametrize("kind", ["file", "blob", "uint8array"])
def test_png_output_for_every_input_kind(serve, png, tmp_path, kind):
    live = serve()
    out = tmp_path / "out.png"
    result = run_js_job(live.v2, DEV, {"prompt": "make it night", "width": 512, "height": 512,
                                       "seed": 3}, [png], accept="image/png",
                        output_path=out, inputKind=kind)
    assert result["ok"], result
    assert result["job"]["config"]["seed"] == 3
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_validation_error_becomes_a_user_error(serve, png):
    live = serve()
    result = run_js_job(live.v2, DEV, {"prompt": "add a hat", "width": 1000}, [png])
    assert not result["ok"]
    assert result["errorClass"] == "ProdiaUserError"
    assert result["message"].startswith("config.width: must be a multiple of 16, got 1000 (id: ")


def test_wrong_token_is_a_bad_response_naming_it(serve, png):
    live = serve(tokens=["right-token-9e8d7c6b5a"])
    result = run_js_job(live.v2, DEV, {"prompt": "add a hat"}, [png], token="wrong")
    assert not result["ok"] and result["errorClass"] == "ProdiaBadResponseError"
    assert "401 token is invalid" in result["message"]


def test_client_retries_a_full_queue_and_gets_through(serve, png):
    engine = FakeEngine(step_seconds=0.25)
    live = serve(engine, queue_size=1)
    busy = [threading.Thread(target=post_job, args=(
        live.url, {"prompt": "hold the queue", "width": 512, "height": 512, "steps": 6},
        png.read_bytes())) for _ in range(2)]
    for thread in busy:
        thread.start()
        time.sleep(0.2)
    result = run_js_job(live.v2, DEV, {"prompt": "queued edit", "width": 512, "height": 512,
                                       "steps": 1}, [png])
    for thread in busy:
        thread.join()
    assert result["ok"], result
    assert [r.prompt for r in engine.requests][-1] == "queued edit"


def test_klein_job_through_the_official_client(serve, kontext_and_klein, png, tmp_path):
    live = serve(kontext_and_klein)
    out = tmp_path / "out.png"
    result = run_js_job(live.v2, "inference.flux-2.klein.4b.img2img.v1",
                        {"prompt": "make it night", "seed": 4}, [png], accept="image/png",
                        output_path=out)
    assert result["ok"], result
    assert result["job"]["config"]["steps"] == 4
    from PIL import Image

    assert Image.open(out).size == (640, 480)  # the input's size (no width/height sent)
