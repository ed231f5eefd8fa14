"""`kontext batch` rows: JSONL/CSV/folder reading, validation with the server's rules, outputs."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx2
import pytest
from helpers.images import gradient_png, image_bytes

from server.atomic_files import TEMP_SUFFIX, remove_stale_temps, write_atomic
from server.cli.batch.manifest import BadRow, ManifestError, Row, folder_rows, read_manifest
from server.cli.batch.outputs import output_is_valid
from server.cli.batch.remote_client import job_url, parse_answer, retry_after_seconds
from server.cli.batch.validate import resolve_rows


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "a.png").write_bytes(gradient_png(512, 512))
    (tmp_path / "b.jpg").write_bytes(image_bytes(600, 400, "JPEG"))
    return tmp_path


def _resolve(tmp_path: Path, manifest: Path, **defaults) -> list[Row | BadRow]:
    return resolve_rows(read_manifest(manifest), defaults, manifest.parent, tmp_path / "out")


def test_jsonl_rows_resolve_with_the_server_model(workdir: Path) -> None:
    manifest = workdir / "edits.jsonl"
    manifest.write_text(
        json.dumps({"image": "a.png", "prompt": "make it red", "width": 512, "height": 576,
                    "steps": 2, "guidance_scale": 3, "seed": 7, "style_preset": "anime"}) + "\n"
        "\n"  # blank lines are not rows
        + json.dumps({"image": "b.jpg", "prompt": "add a hat", "output": "sub/hat.webp"}) + "\n")
    first, second = _resolve(workdir, manifest)
    assert isinstance(first, Row) and isinstance(second, Row)
    assert (first.config.width, first.config.height, first.config.steps) == (512, 576, 2)
    assert first.config.guidance_scale == 3.0 and first.config.style_preset == "anime"
    assert first.config.seed == 7 and first.seed_given
    assert first.output == (workdir / "out" / "a.png").resolve() and first.fmt == "png"
    assert first.image == (workdir / "a.png").resolve()
    # No seed: a random one is drawn now (so it can be reported), and marked as not given.
    assert not second.seed_given and isinstance(second.config.seed, int)
    assert second.output == (workdir / "out" / "sub" / "hat.webp").resolve()
    # No size: the photo's shape (600 x 400, 3:2) at about 1 MP, not the wire's 1024 x 1024.
    assert second.fmt == "webp"
    assert (second.config.width, second.config.height) == (1040, 688)
    assert second.source == "edits.jsonl line 3"


def test_bad_jsonl_rows_are_reported_not_raised(workdir: Path) -> None:
    manifest = workdir / "edits.jsonl"
    lines = [
        '{"image": "a.png", "prompt": "ok row", "width": 512, "height": 512}',
        '{"image": "a.png", "prompt": "bad width", "width": 1000, "output": "w.png"}',
        '{"image": "missing.png", "prompt": "no such file"}',
        '{"prompt": "no image"}',
        '{"image": "a.png", "prompt": "typo", "stpes": 3, "output": "t.png"}',
        '{"image": "a.png", "prompt": "x", "output": "short.png"}',
        '{"image": "a.png", "prompt": "wrong ext", "output": "out.gif"}',
        '{"image": "a.png", "prompt": "escape", "output": "../up.png"}',
        '{"image": "a.png", "prompt": "same output again"}',
        '{"image": "a.png", "prompt": "preset", "style_preset": "watercolor", "output": "p.png"}',
        '{"image": "a.png", "prompt": "broken json"',
        '["not", "an", "object"]',
    ]
    manifest.write_text("\n".join(lines) + "\n")
    rows = _resolve(workdir, manifest)
    assert isinstance(rows[0], Row)
    errors = [row.error for row in rows[1:]]
    assert all(isinstance(row, BadRow) for row in rows[1:])
    assert errors[0] == "config.width: must be a multiple of 16, got 1000"
    assert errors[1].startswith("image: no such file:") and "missing.png" in errors[1]
    assert errors[2] == "image: is required"
    assert errors[3] == "config.stpes: unknown field"
    assert errors[4] == "config.prompt: must be at least 3 characters, got 1"
    assert errors[5].startswith("output: extension must be .png, .jpg, .jpeg or .webp")
    assert errors[6].startswith("output: must be a name inside the output folder")
    assert errors[7].startswith("output: a.png is also the output of row 1")
    assert errors[8].startswith("config.style_preset: must be one of")
    assert errors[9].startswith("not valid JSON")
    assert errors[10] == "each line must be a JSON object"
    # The bad row keeps what was sent, so the report shows it.
    assert rows[1].fields["width"] == 1000 and rows[1].number == 2


def test_csv_rows_get_real_types_and_server_wording(workdir: Path) -> None:
    manifest = workdir / "edits.csv"
    manifest.write_text(
        "image,prompt,width,height,steps,guidance_scale,seed,progressive,output\n"
        "a.png,make it blue,512,512,2,3.5,11,true,blue.jpg\n"
        ",,,,,,,,\n"  # an empty row is not a row
        "b.jpg,make it green,,,,,,,\n"
        "a.png,bad steps,512,512,many,,,,bad.png\n"
        "a.png,extra,512,512,1,,,,e.png,surplus\n")
    rows = _resolve(workdir, manifest)
    assert len(rows) == 4
    blue, green, bad_steps, extra = rows
    assert isinstance(blue, Row) and blue.fmt == "jpeg" and blue.config.progressive is True
    assert (blue.config.steps, blue.config.guidance_scale, blue.config.seed) == (2, 3.5, 11)
    # Empty cells are defaults (the size: b.jpg's 3:2 shape at about 1 MP).
    assert isinstance(green, Row) and not green.seed_given
    assert (green.config.width, green.config.height) == (1040, 688)
    assert isinstance(bad_steps, BadRow)
    assert bad_steps.error == "config.steps: must be an integer, got 'many'"
    assert isinstance(extra, BadRow) and "more cells than the header" in extra.error


def test_a_row_may_list_several_images(workdir: Path) -> None:
    (workdir / "c.webp").write_bytes(image_bytes(300, 300, "WEBP"))
    jsonl = workdir / "edits.jsonl"
    jsonl.write_text("\n".join(json.dumps(row) for row in [
        {"image": ["a.png", "b.jpg", "c.webp"], "prompt": "put the hat on the cat",
         "reference_method": "index"},
        {"image": ["a.png", "missing.png"], "prompt": "x and y", "output": "m.png"},
        {"image": ["a.png"] * 5, "prompt": "too many", "output": "t.png"},
        {"image": [], "prompt": "none", "output": "n.png"},
        {"images": ["a.png", "b.jpg"], "prompt": "plural", "output": "p.png"},
    ]) + "\n")
    several, missing, many, empty, plural = _resolve(workdir, jsonl)
    assert isinstance(several, Row) and several.config.reference_method == "index"
    assert [path.name for path in several.images] == ["a.png", "b.jpg", "c.webp"]
    assert several.image.name == "a.png" and several.output.name == "a.png"
    assert isinstance(missing, BadRow) and missing.error.startswith("image[1]: no such file:")
    assert many.error == ("image: must list 1 to 4 images (the one to edit, then references), "
                          "got 5")
    assert empty.error.startswith("image: must list 1 to 4 images")
    assert plural.error == "images: unknown field; list several images in `image`"
    # CSV: the paths of one cell, separated by `|`.
    csv = workdir / "edits.csv"
    csv.write_text("image,prompt\na.png | c.webp,put the hat on the cat\nb.jpg,one image\n")
    two, one = _resolve(workdir, csv)
    assert [path.name for path in two.images] == ["a.png", "c.webp"]
    assert [path.name for path in one.images] == ["b.jpg"]


def test_cli_defaults_apply_and_rows_override(workdir: Path) -> None:
    manifest = workdir / "edits.jsonl"
    manifest.write_text('{"image": "a.png", "prompt": "row prompt", "steps": 4}\n')
    (row,) = _resolve(workdir, manifest, prompt="default prompt", steps=1, width=512, seed=5)
    assert isinstance(row, Row)
    assert (row.config.prompt, row.config.steps, row.config.width) == ("row prompt", 4, 512)
    assert row.config.seed == 5 and row.seed_given


def test_folder_rows_take_images_only(workdir: Path) -> None:
    (workdir / "notes.txt").write_text("not an image")
    (workdir / ".a.png.1234.kontext-partial.png").write_bytes(b"hidden")
    rows = resolve_rows(folder_rows(workdir), {"prompt": "make it red"}, workdir,
                        workdir / "out", "jpeg")
    assert [row.image.name for row in rows] == ["a.png", "b.jpg"]
    assert [row.output.name for row in rows] == ["a.jpg", "b.jpg"]
    # Writing into the input folder must never overwrite an input.
    rows = resolve_rows(folder_rows(workdir), {"prompt": "make it red"}, workdir, workdir, "png")
    assert isinstance(rows[0], BadRow) and "is an input image itself" in rows[0].error
    assert isinstance(rows[1], Row) and rows[1].output.name == "b.png"


def test_unreadable_manifests_are_setup_errors(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match=r"must be \.jsonl or \.csv"):
        read_manifest(tmp_path / "edits.txt")
    with pytest.raises(ManifestError, match="cannot read"):
        read_manifest(tmp_path / "absent.jsonl")
    with pytest.raises(ManifestError, match="not a folder"):
        folder_rows(tmp_path / "absent")


def test_outputs_are_atomic_and_checked_for_resume(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "out.png"
    write_atomic(path, image_bytes(512, 576, "PNG"))
    assert output_is_valid(path, 512, 576)
    assert not output_is_valid(path, 512, 512)  # another size was asked for: redo it
    path.write_bytes(image_bytes(512, 576, "PNG")[:300])  # truncated, as after a crash
    assert not output_is_valid(path, 512, 576)
    assert not output_is_valid(tmp_path / "absent.png", 512, 512)
    stale = tmp_path / "deep" / f".out.png.1234{TEMP_SUFFIX}"
    stale.write_bytes(b"partial")
    assert remove_stale_temps(tmp_path) == [stale] and not stale.exists()
    assert [p.name for p in (tmp_path / "deep").iterdir()] == ["out.png"]


def test_remote_client_helpers() -> None:
    assert job_url("http://127.0.0.1:8000") == "http://127.0.0.1:8000/v2/job"
    assert job_url("https://inference.prodia.com/v2/") == "https://inference.prodia.com/v2/job"
    assert retry_after_seconds(httpx2.Response(429, headers={"Retry-After": "3"})) == 3
    assert retry_after_seconds(httpx2.Response(429, headers={"Retry-After": "99999"})) == 300
    assert retry_after_seconds(httpx2.Response(429)) is None
    past = "Wed, 21 Oct 2015 07:28:00 GMT"
    assert retry_after_seconds(httpx2.Response(429, headers={"Retry-After": past})) == 0
    answer = asyncio.run(parse_answer(httpx2.Response(401, text="token is invalid"), 1))
    assert answer.error == "HTTP 401: token is invalid"
    answer = asyncio.run(parse_answer(httpx2.Response(400, json={"error": "config.width: bad"}),
                                      1))
    assert answer.error == "HTTP 400: config.width: bad"


def test_help_says_what_rerunning_a_seedless_row_does(capsys: pytest.CaptureFixture[str]) -> None:
    from server.cli.main import main

    with pytest.raises(SystemExit) as exit_info:
        main(["batch", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "Seeds: a row without a seed gets a random one at run time" in text
    assert "Re-running such a row produces a different image unless its output" in text
    assert "--demo" in text and "--concurrency" in text
