"""LoRAs through the real HTTP API on the tiny engine with a LoRA folder: by name and by
{name, scale}, scale 0, the listing (good, corrupt, SDXL, wrong shapes), refusals that leave
the engine working, a file dropped in while serving, bit-identical no-LoRA jobs, the official
JS client, and a `kontext batch --local --lora-dir` manifest row.

Tiny LoRAs are made here from the tiny transformer with PEFT (helpers/lora_files.py).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import httpx2
import pytest
from helpers.http import DEV, image_of, job_of, multipart_parts, post_job
from helpers.images import gradient_png
from helpers.js_client import run_js_job
from helpers.live_server import start_server
from helpers.lora_files import (
    make_lora,
    save_corrupt,
    save_diffusers,
    save_full_size_shapes,
    save_kohya,
    save_sdxl,
)
from helpers.servers import make_settings

from server.api.app import create_app
from server.cli.main import main

PNG = gradient_png(320, 256)
CONFIG = {"prompt": "make it red", "width": 512, "height": 512, "steps": 1, "seed": 7}
BLUE = {"name": "blue", "scale": 0.7}


@pytest.fixture(scope="module")
def lora_dir(tmp_path_factory, tiny_dir) -> Path:
    folder = tmp_path_factory.mktemp("loras")
    (folder / "bad").mkdir()
    save_diffusers(make_lora(tiny_dir, seed=1), folder / "red.safetensors")
    save_kohya(make_lora(tiny_dir, seed=2), folder / "blue.safetensors")
    save_corrupt(folder / "bad" / "corrupt.safetensors")
    save_sdxl(folder / "bad" / "sdxl.safetensors")
    save_full_size_shapes(folder / "bad" / "full_size.safetensors")
    return folder


@pytest.fixture(scope="module")
def live(tiny_dir, lora_dir):
    """`kontext serve --demo --lora-dir DIR`, its engine built as serve builds it."""
    from server.cli.serve import build_engine

    settings = make_settings(demo=True, demo_dir=tiny_dir, lora_dir=lora_dir)
    server = start_server(create_app(settings, build_engine(settings)))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def edit(live):
    """edit(loras) → (job JSON, PNG bytes); each distinct job runs once per module."""

    @functools.cache
    def run(loras: str | None) -> tuple[dict, bytes]:
        return send(live.url, None if loras is None else json.loads(loras))

    return lambda loras=None: run(None if loras is None else json.dumps(loras))


def send(url: str, loras, expect: int = 200) -> tuple[dict, bytes | None]:
    config = {**CONFIG, **({} if loras is None else {"loras": loras})}
    reply = post_job(url, config, PNG, "multipart/form-data; image/png")
    assert reply.status_code == expect, reply.text
    output = multipart_parts(reply).get("output")
    return job_of(reply), None if output is None else output[1]


def pixels(data: bytes) -> bytes:
    return image_of(data).convert("RGB").tobytes()


def test_a_lora_by_name_or_object_changes_the_image_and_scale_zero_is_none(edit):
    _, base = edit()
    job, red = edit(["red"])
    assert job["config"]["loras"] == ["red"]
    assert job["metrics"]["loras"]["applied"] == [{"name": "red", "scale": 1.0}]
    job, blue = edit([BLUE])
    assert job["config"]["loras"] == [BLUE]
    assert len({pixels(base), pixels(red), pixels(blue)}) == 3
    job, zero = edit([{"name": "red", "scale": 0}])
    assert job["metrics"]["loras"]["applied"] == []
    assert pixels(zero) == pixels(base)


def test_the_listing_reports_good_corrupt_sdxl_and_wrong_shaped_files(live):
    listing = httpx2.get(f"{live.url}/v2/loras").json()
    assert listing["enabled"] is True
    found = {entry["name"]: entry for entry in listing["loras"]}
    assert {"red", "blue", "bad/corrupt", "bad/sdxl", "bad/full_size"} <= set(found)
    red, blue = found["red"], found["blue"]
    assert (red["layout"], red["rank"], red["loads"], red["problem"]) == (
        "diffusers", 4, True, None)
    assert (blue["layout"], blue["base_model"]) == ("kohya", "flux1")
    assert red["size_bytes"] > 0 and "path" not in red  # no server path in the listing
    corrupt, sdxl = found["bad/corrupt"], found["bad/sdxl"]
    assert (corrupt["layout"], corrupt["loads"]) == ("unreadable", False)
    assert "not a readable .safetensors file" in corrupt["problem"]
    assert not sdxl["loads"] and "SDXL UNet LoRA" in sdxl["problem"]
    assert sdxl["base_model"] == "sdxl_base_v1-0"


def test_bad_loras_are_400_and_the_next_job_is_unaffected(live, edit):
    expected = edit(["red"])[1]
    unknown, _ = send(live.url, ["red", "nope"], expect=400)
    assert unknown["error"].startswith("config.loras[1].name: unknown LoRA 'nope'")
    corrupt, _ = send(live.url, ["bad/corrupt"], expect=400)
    assert corrupt["error"].startswith("config.loras[0].name: LoRA 'bad/corrupt' cannot be "
                                       "used: not a readable .safetensors file")
    # Wrong shapes show only when the engine loads the file: its own 400, then the listing.
    shapes, _ = send(live.url, ["red", "bad/full_size"], expect=400)
    assert "LoRA 'bad/full_size' cannot be used" in shapes["error"]
    assert "tensor shapes do not match this model" in shapes["error"]
    listed = {e["name"]: e for e in httpx2.get(f"{live.url}/v2/loras").json()["loras"]}
    assert (listed["bad/full_size"]["loads"], listed["bad/full_size"]["verified"]) == (
        False, True)
    _, after = send(live.url, ["red"])
    assert after == expected


def test_a_file_dropped_into_the_folder_is_listed_and_used_without_a_restart(
        live, edit, lora_dir, tiny_dir):
    (lora_dir / "new").mkdir()
    save_diffusers(make_lora(tiny_dir, seed=3), lora_dir / "new" / "dropped.safetensors")
    names = [entry["name"] for entry in httpx2.get(f"{live.url}/v2/loras").json()["loras"]]
    assert "new/dropped" in names
    job, dropped = send(live.url, ["new/dropped"])
    assert job["metrics"]["loras"]["cache_misses"] == 1
    assert pixels(dropped) != pixels(edit()[1])


def test_no_lora_after_loras_is_bit_identical_to_a_server_without_a_lora_folder(
        live, edit, serve, tiny_engine):
    edit([BLUE])  # LoRA jobs have run on this server
    _, after = send(live.url, None)
    plain = serve(engine=tiny_engine)
    _, never = send(plain.url, None)
    assert after == never


@pytest.mark.js
def test_the_official_js_client_sends_loras(live, edit, tmp_path):
    photo, out = tmp_path / "photo.png", tmp_path / "out.png"
    photo.write_bytes(PNG)
    result = run_js_job(live.v2, DEV, {**CONFIG, "loras": [BLUE]}, [photo],
                        accept="image/png", output_path=out)
    assert result["ok"], result
    assert result["job"]["config"]["loras"] == [BLUE]
    assert out.read_bytes() == edit([BLUE])[1]


def test_a_batch_manifest_row_with_loras_is_the_same_edit(tmp_path, tiny_dir, lora_dir, edit):
    (tmp_path / "photo.png").write_bytes(PNG)
    manifest = tmp_path / "edits.csv"
    manifest.write_text("image,prompt,width,height,steps,seed,loras\n"
                        "photo.png,{prompt},{width},{height},{steps},{seed},blue:0.7\n"
                        .format(**CONFIG))
    out = tmp_path / "out"
    assert main(["batch", str(manifest), "--out", str(out), "--local", "--demo",
                 "--demo-dir", str(tiny_dir), "--lora-dir", str(lora_dir),
                 "--log-level", "warning"]) == 0
    report = json.loads((out / "report.jsonl").read_text())
    assert report["config"]["loras"] == [BLUE]
    assert pixels((out / "photo.png").read_bytes()) == pixels(edit([BLUE])[1])
