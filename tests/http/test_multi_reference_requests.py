"""Multi-reference [dev] jobs on the wire (FakeEngine behind a real server): 1–4 `input`
parts, their order, duplicates, `reference_method`, the sizes in the job JSON, refusals.

The fake engine plans its inputs with the real engine's torch-free planner
(pipelines/references/plan.py), so it refuses and sizes inputs as the real one does; the real
pipeline behind HTTP is tests/e2e/test_multi_reference_http.py.
"""

from __future__ import annotations

import io

import httpx2
import pytest
from helpers.async_api import get, wait_state
from helpers.fake_engine import FakeEngine
from helpers.http import PRO_IMG, image_of, job_part, post_images
from helpers.images import gradient_png, image_bytes
from PIL import Image

from pipelines.references.plan import plan_inputs

CONFIG = {"prompt": "put the red box on the table", "width": 512, "height": 512, "steps": 2,
          "seed": 5}
# Four images told apart by their sizes.
CANVAS, RED, TALL, WIDE = (gradient_png(640, 480), image_bytes(300, 400, color=(210, 40, 30)),
                           image_bytes(256, 600, color=(20, 90, 200)),
                           image_bytes(700, 300, color=(30, 160, 60)))
SIZE = {CANVAS: (640, 480), RED: (300, 400), TALL: (256, 600), WIDE: (700, 300)}


def sent(engine: FakeEngine) -> list[tuple[int, int]]:
    """The sizes of the images the engine was given: canvas, then references."""
    request = engine.requests[-1]
    return [request.image.size, *(image.size for image in request.references)]


def planned(images: list[bytes], method: str = "offset") -> dict:
    """What the job JSON should report for these images (the engine's own plan)."""
    canvas, *references = (Image.open(io.BytesIO(data)) for data in images)
    plan = plan_inputs(canvas, tuple(references), method)
    return {"inputs": [{"width": w, "height": h} for w, h in plan.sizes],
            "reference_tokens": plan.tokens}


def test_inputs_reach_the_engine_in_order_and_the_job_reports_their_sizes(serve):
    engine = FakeEngine()
    live = serve(engine)
    # Four images, each sent twice as the JS client does: eight parts, the default limit.
    reply = post_images(live.url, CONFIG, [CANVAS, RED, TALL, WIDE], "application/json",
                        twice=True)
    assert reply.status_code == 200, reply.text
    assert sent(engine) == [SIZE[CANVAS], SIZE[RED], SIZE[TALL], SIZE[WIDE]]
    job = reply.json()
    assert job["config"]["reference_method"] == "offset"  # the default, echoed
    assert engine.requests[-1].reference_method == "offset"
    metrics = planned([CANVAS, RED, TALL, WIDE])
    assert {key: job["metrics"][key] for key in metrics} == metrics
    assert len(job["metrics"]["inputs"]) == 4

    reply = post_images(live.url, {**CONFIG, "reference_method": "stitch"},
                        [CANVAS, WIDE, RED], "application/json")
    assert reply.status_code == 200, reply.text
    assert sent(engine) == [SIZE[CANVAS], SIZE[WIDE], SIZE[RED]]
    assert engine.requests[-1].reference_method == "stitch"
    stitched = planned([CANVAS, WIDE, RED], "stitch")
    assert {key: reply.json()["metrics"][key] for key in stitched} == stitched


def test_one_input_reports_its_size_as_used(serve):
    live = serve(FakeEngine())
    reply = post_images(live.url, CONFIG, [CANVAS], "application/json")
    assert reply.json()["metrics"]["inputs"] == planned([CANVAS])["inputs"]


def test_the_output_shows_every_input_in_order(serve):
    # The fake engine pastes each input, in order, into the output's top row.
    engine = FakeEngine()
    live = serve(engine)
    reply = post_images(live.url, CONFIG, [CANVAS, RED, TALL], "image/png")
    output = image_of(reply.content)
    assert output.getpixel((64 + 32, 32)) == (210, 40, 30)
    assert output.getpixel((128 + 32, 32)) == (20, 90, 200)


def small(width: int, height: int) -> bytes:
    return image_bytes(width, height, color=(9, 9, 9))


@pytest.mark.parametrize(("images", "twice", "config", "message"), [
    ([CANVAS, RED, TALL, WIDE, small(400, 401)], False, CONFIG,
     "input: inference.flux-fast.dev-kontext.img2img.v1 takes at most 4 input images (the "
     "image to edit and 3 references), got 5 distinct ones"),
    ([CANVAS, RED, TALL, WIDE, small(400, 401)], True, CONFIG,
     "input: at most 8 `input` parts (max_input_parts), and one `job` part"),
    ([CANVAS, RED], False, {**CONFIG, "reference_method": "mosaic"},
     "config.reference_method: must be one of 'index', 'offset' or 'stitch', got 'mosaic'"),
    ([CANVAS, RED, small(200, 300), WIDE], False, CONFIG,
     "input[2]: is 200x300; each side must be at least 256 px"),
    ([CANVAS, b"not an image" * 20], False, CONFIG,
     "input[1]: is not a readable PNG, JPEG or WebP image"),
], ids=["five-images", "too-many-parts", "unknown-method", "small-third-image",
        "unreadable-second-image"])
def test_refusals_name_the_rule_and_the_input(serve, images, twice, config, message):
    engine = FakeEngine()
    live = serve(engine)
    reply = post_images(live.url, config, images, "application/json", twice=twice)
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"].startswith(message), reply.json()["error"]
    assert engine.requests == []


def test_pro_img2img_takes_one_image_even_on_the_local_fallback(serve):
    engine = FakeEngine()
    live = serve(engine, fallback="local")
    reply = post_images(live.url, {"prompt": "make it blue"}, [CANVAS, RED],
                        "application/json", job_type=PRO_IMG)
    assert reply.status_code == 400
    assert reply.json()["error"] == (
        "input: inference.flux-kontext.pro.img2img.v2 takes 1 input image (only the [dev] and "
        "klein job types take references), got 2 distinct ones")
    assert engine.requests == []
    # The same image twice (the JS client's way) is one image.
    reply = post_images(live.url, {"prompt": "make it blue"}, [CANVAS], "application/json",
                        job_type=PRO_IMG, twice=True)
    assert reply.status_code == 200, reply.text
    assert sent(engine) == [SIZE[CANVAS]]


def test_async_job_with_three_inputs(serve, tmp_path):
    engine = FakeEngine()
    live = serve(engine, results_dir=tmp_path / "results")
    reply = post_images(live.url, {**CONFIG, "reference_method": "index"},
                        [CANVAS, TALL, RED], path="/v2/job/async")
    assert reply.status_code == 201, reply.text
    job_id = reply.json()["id"]
    wait_state(live.url, job_id, "processed")
    job = get(live.url, job_id, "job.json").json()
    assert job["config"]["reference_method"] == "index"
    assert job["metrics"]["inputs"] == planned([CANVAS, TALL, RED], "index")["inputs"]
    assert sent(engine) == [SIZE[CANVAS], SIZE[TALL], SIZE[RED]]
    output = get(live.url, job_id, "output/output.jpg")
    assert image_of(output.content).size == (512, 512)


def test_async_refusal_names_the_input(serve, tmp_path):
    live = serve(FakeEngine(), results_dir=tmp_path / "results")
    reply = post_images(live.url, CONFIG, [CANVAS, small(100, 300)], path="/v2/job/async")
    assert reply.status_code == 400
    assert reply.json()["error"].startswith("input[1]: is 100x300")


def test_openapi_documents_several_inputs_and_the_method(serve):
    spec = httpx2.get(f"{serve(FakeEngine()).url}/openapi.json").json()
    body = spec["paths"]["/v2/job"]["post"]["requestBody"]["content"]["multipart/form-data"]
    variants = {variant["title"]: variant for variant in body["schema"]["properties"]["job"]
                ["oneOf"]}
    dev = variants["inference.flux-fast.dev-kontext.img2img.v1"]
    assert dev["description"].startswith("Takes 1 to 4 input images")
    method = dev["properties"]["config"]["properties"]["reference_method"]
    assert method["enum"] == ["index", "offset", "stitch"] and method["default"] == "offset"
    assert "Our extension" in method["description"]
    assert variants[PRO_IMG]["description"].startswith("Takes 1 input image")


def test_the_job_part_may_come_first(serve):
    engine = FakeEngine()
    live = serve(engine)
    parts = [job_part(CONFIG), ("input", ("a.png", CANVAS, "image/png")),
             ("input", ("b.png", WIDE, "image/png"))]
    reply = httpx2.post(f"{live.v2}/job", files=parts, timeout=60)
    assert reply.status_code == 200, reply.text
    assert sent(engine) == [SIZE[CANVAS], SIZE[WIDE]]
