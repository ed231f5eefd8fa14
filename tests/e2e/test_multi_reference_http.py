"""Multi-reference edits through HTTP on the real pipeline (tiny checkpoint): several `input`
parts change the edit, their order matters, the job JSON reports the sizes used, the official
JS client sends three images, and a batch row with two images is the same edit as the job.

The server's engine is built by `kontext serve`'s own `build_engine` with the smallest
reference token budget, which keeps these CPU edits short and shows the setting reaches
the engine.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from helpers.http import image_of, job_of, multipart_parts, post_images
from helpers.images import gradient_png, image_bytes
from helpers.js_client import run_js_job
from helpers.live_server import start_server
from helpers.servers import make_settings

from pipelines.references.plan import MIN_REFERENCE_TOKEN_BUDGET
from server.api.app import create_app
from server.cli.main import main
from server.cli.serve import build_engine

BUDGET = MIN_REFERENCE_TOKEN_BUDGET
CONFIG = {"prompt": "put the red box on the table", "width": 512, "height": 512, "steps": 1,
          "seed": 21}
CANVAS = gradient_png(320, 256)
RED, TALL, WIDE = (image_bytes(300, 300, color=(210, 40, 30)),
                   image_bytes(256, 480, color=(20, 90, 200)),
                   gradient_png(480, 256))


@pytest.fixture(scope="module")
def live(tiny_dir):
    engine = build_engine(make_settings(demo=True, demo_dir=tiny_dir,
                                        reference_token_budget=BUDGET))
    assert engine.reference_token_budget == BUDGET
    server = start_server(create_app(make_settings(reference_token_budget=BUDGET), engine))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def edits(live) -> dict[str, tuple[dict, bytes]]:
    """The job JSON and PNG output of one, two and four inputs, and four reordered (each
    edit costs seconds on a CPU: made once, read by several tests)."""
    runs = {"one": [CANVAS], "two": [CANVAS, RED], "four": [CANVAS, RED, TALL, WIDE],
            "swapped": [CANVAS, TALL, RED, WIDE]}
    made = {}
    for name, images in runs.items():
        reply = post_images(live.url, CONFIG, images, "multipart/form-data; image/png")
        assert reply.status_code == 200, reply.text
        made[name] = job_of(reply), multipart_parts(reply)["output"][1]
    return made


def test_references_change_the_edit_and_their_order_matters(edits):
    outputs = {hashlib.sha256(image_of(png).tobytes()).digest() for _, png in edits.values()}
    assert len(outputs) == 4
    one, two, four, swapped = (edits[name][0] for name in ("one", "two", "four", "swapped"))
    sizes = [[(size["width"], size["height"]) for size in job["metrics"]["inputs"]]
             for job in (one, two, four, swapped)]
    assert [len(used) for used in sizes] == [1, 2, 4, 4]
    # The canvas keeps the size stock diffusers gives it; references share the budget.
    assert sizes[0][0] == sizes[1][0] == sizes[2][0] == sizes[3][0]
    assert sizes[3][1:] == [sizes[2][2], sizes[2][1], sizes[2][3]]
    for job in (two, four, swapped):
        assert job["metrics"]["reference_tokens"] <= BUDGET
        assert job["config"]["reference_method"] == "offset"
    assert sum(w * h // 256 for w, h in sizes[2]) == four["metrics"]["reference_tokens"]


@pytest.mark.js
def test_the_official_js_client_sends_three_images(live, tmp_path):
    paths = []
    for name, data in (("scene.png", CANVAS), ("red.png", RED), ("tall.png", TALL)):
        paths.append(tmp_path / name)
        paths[-1].write_bytes(data)
    out = tmp_path / "out.png"
    # Each File goes out twice (its name, then image.jpg): six parts, three images.
    result = run_js_job(live.v2, "inference.flux-fast.dev-kontext.img2img.v1",
                        {**CONFIG, "reference_method": "index"}, paths,
                        accept="image/png", output_path=out)
    assert result["ok"], result
    job = result["job"]
    assert job["state"]["current"] == "completed"
    assert job["config"]["reference_method"] == "index"
    assert len(job["metrics"]["inputs"]) == 3
    assert image_of(out.read_bytes()).size == (512, 512)


def test_a_batch_row_with_two_images_is_the_same_edit_as_the_job(edits, tiny_dir, tmp_path):
    (tmp_path / "scene.png").write_bytes(CANVAS)
    (tmp_path / "red.png").write_bytes(RED)
    manifest = tmp_path / "edits.jsonl"
    manifest.write_text(json.dumps({"image": ["scene.png", "red.png"], **CONFIG}) + "\n")
    out = tmp_path / "out"
    assert main(["batch", str(manifest), "--out", str(out), "--local", "--demo",
                 "--demo-dir", str(tiny_dir), "--reference-token-budget", str(BUDGET),
                 "--log-level", "warning"]) == 0
    # `batch --local` submits the row to the job service the server uses: same bytes.
    assert (out / "scene.png").read_bytes() == edits["two"][1]
    (line,) = [json.loads(text) for text in (out / "report.jsonl").read_text().splitlines()]
    assert line["status"] == "ok" and [Path(p).name for p in line["image"]] == [
        "scene.png", "red.png"]
