"""`kontext batch --local --demo` end to end on the tiny checkpoint: outputs, report, resume."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from helpers.batch_process import interrupt_after_first_output
from helpers.http import post_job
from helpers.images import gradient_png, image_bytes
from PIL import Image

from server.atomic_files import TEMP_SUFFIX
from server.cli.main import main
from server.jobs.backends.local import DEMO_NOTICE


def _report(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _leftovers(directory: Path) -> list[Path]:
    return [p for p in directory.rglob("*") if p.name.endswith(TEMP_SUFFIX)]


def _folder(directory: Path, count: int) -> Path:
    directory.mkdir()
    for i in range(count):
        (directory / f"photo{i:02d}.png").write_bytes(gradient_png(400 + 8 * i, 300))
    return directory


def test_interrupt_then_resume_runs_only_the_remaining_rows(
        tmp_path: Path, tiny_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    images, out = _folder(tmp_path / "photos", 6), tmp_path / "out"
    common = ["batch", "--images", str(images), "--prompt", "make it red", "--out", str(out),
              "--local", "--demo", "--demo-dir", str(tiny_dir), "--width", "512",
              "--height", "512", "--steps", "1", "--log-level", "warning"]
    # 1. The real console command in a subprocess, Ctrl-C'd once its first output exists.
    returncode, stdout, stderr = interrupt_after_first_output(common, out)
    assert returncode == 130, stderr
    assert "interrupted with" in stdout and "re-run the same command" in stdout
    assert "stopping: abandoning the edit in progress" in stderr
    # Not a terminal: plain progress lines with the count, elapsed<remaining and the rate.
    assert re.search(r"^1/6 \[\d\d:\d\d<\d\d:\d\d, +[\d.]+(s/img|img/s)\] ok photo00\.png$",
                     stderr, re.M), stderr
    first = _report(out / "report.jsonl")
    done = {line["output"] for line in first}
    assert first and all(line["status"] == "ok" for line in first)
    assert 1 <= len(done) < 6
    assert {str(p.resolve()) for p in out.glob("*.png")} == done  # nothing half-written
    assert not _leftovers(tmp_path)

    # 2. The same command again, in-process: only the remaining rows run.
    assert main(common) == 0
    captured = capsys.readouterr()
    summary = captured.out.strip().splitlines()[-1]
    # Skipped rows count as done from the start: the first line is the first row run.
    assert re.search(rf"^{len(done) + 1}/6 \[", captured.err, re.M), captured.err
    assert summary.startswith(f"kontext batch: 6 rows: {6 - len(done)} ok, {len(done)} skipped, "
                              "0 failed")
    second = _report(out / "report.jsonl")
    assert len(second) == 6
    # Each row says what the server's job JSON would: the demo notice, the inputs used.
    assert f"kontext batch: notice: {DEMO_NOTICE}" in captured.out
    for line in second:
        if line["status"] == "ok":
            assert line["notice"] == DEMO_NOTICE
            assert line["metrics"]["inputs"][0]["width"] > 0 and line["metrics"]["tier"]
    status = {line["output"]: line["status"] for line in second}
    assert {o for o, s in status.items() if s == "skipped"} == done
    assert all(s == "ok" for o, s in status.items() if o not in done)
    # Skipped rows carry the seed their output was made with (from the first report).
    seeds = {line["output"]: line["config"]["seed"] for line in first}
    assert all(line["config"]["seed"] == seeds[line["output"]]
               for line in second if line["status"] == "skipped")
    for i in range(6):
        with Image.open(out / f"photo{i:02d}.png") as image:
            assert image.size == (512, 512)
    assert not _leftovers(tmp_path)


def test_manifest_with_bad_rows(tmp_path: Path, tiny_dir: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a.png").write_bytes(gradient_png(640, 480))
    (tmp_path / "b.webp").write_bytes(image_bytes(300, 500, "WEBP"))
    (tmp_path / "broken.png").write_bytes(gradient_png(640, 480)[:200])
    (tmp_path / "tiny.png").write_bytes(image_bytes(100, 100))
    rows = [
        {"image": "a.png", "prompt": "make it red", "width": 512, "height": 576, "seed": 42},
        {"image": "b.webp", "prompt": "add a hat", "style_preset": "anime", "width": 576,
         "height": 512, "output": "hat.jpg"},
        {"image": "missing.png", "prompt": "no such file", "output": "m.png"},
        {"image": "broken.png", "prompt": "truncated file"},
        {"image": "tiny.png", "prompt": "too small an input"},
        {"image": "a.png", "prompt": "bad width", "width": 1000, "output": "w.png"},
    ]
    manifest = tmp_path / "edits.jsonl"
    manifest.write_text("".join(json.dumps(row) + "\n" for row in rows))
    out = tmp_path / "out"
    code = main(["batch", str(manifest), "--out", str(out), "--local", "--demo",
                 "--demo-dir", str(tiny_dir), "--steps", "1", "--log-level", "warning"])
    assert code == 1
    summary = capsys.readouterr().out.strip().splitlines()[-1]
    assert summary.startswith("kontext batch: 6 rows: 2 ok, 0 skipped, 4 failed")
    lines = {line["row"]: line for line in _report(out / "report.jsonl")}
    assert [lines[n]["status"] for n in range(1, 7)] == ["ok", "ok"] + ["failed"] * 4
    assert lines[1]["config"]["seed"] == 42 and lines[1]["config"]["steps"] == 1
    assert isinstance(lines[2]["config"]["seed"], int)  # random, and recorded
    assert lines[2]["config"]["style_preset"] == "anime"
    assert lines[1]["seconds"] > 0 and lines[1]["metrics"]["elapsed"] > 0
    assert lines[3]["error"].startswith("image: no such file")
    assert lines[4]["error"] == ("image: could not be decoded (truncated or corrupt data: "
                                 "image file is truncated)")
    assert lines[5]["error"] == "image: is 100x100; each side must be at least 256 px"
    assert lines[6]["error"] == "config.width: must be a multiple of 16, got 1000"
    with Image.open(out / "a.png") as image:
        assert image.size == (512, 576) and image.format == "PNG"
    with Image.open(out / "hat.jpg") as image:
        assert image.size == (576, 512) and image.format == "JPEG"
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "hat.jpg", "report.jsonl"]
    assert not any(name.startswith(".") for name in os.listdir(out))


def test_a_row_with_an_aspect_ratio_runs_at_the_size_it_names(
        tmp_path: Path, tiny_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # The row is validated once: its aspect_ratio decides width and height, and the job
    # service takes that prepared config as it is (not a dump with both, which it refuses).
    (tmp_path / "a.png").write_bytes(gradient_png(400, 300))
    manifest = tmp_path / "edits.jsonl"
    manifest.write_text(json.dumps({"image": "a.png", "prompt": "make it red",
                                    "aspect_ratio": "2:1", "steps": 1}) + "\n")
    out = tmp_path / "out"
    code = main(["batch", str(manifest), "--out", str(out), "--local", "--demo",
                 "--demo-dir", str(tiny_dir), "--log-level", "warning"])
    (line,) = _report(out / "report.jsonl")
    assert code == 0, line
    assert line["config"]["aspect_ratio"] == "2:1"
    assert (line["config"]["width"], line["config"]["height"]) == (1040, 512)
    with Image.open(out / "a.png") as image:
        assert image.size == (1040, 512)


def test_a_row_is_the_same_edit_as_the_same_job_through_the_server(
        tmp_path: Path, tiny_dir: Path, tiny_engine, serve) -> None:
    # `batch --local` submits each row to the job service the server uses: same config,
    # same image, same checkpoint give the same bytes as POST /v2/job.
    photo = tmp_path / "photo.png"
    photo.write_bytes(gradient_png(320, 256))
    config = {"prompt": "make it snowy", "style_preset": "anime", "width": 512,
              "height": 544, "steps": 2, "seed": 11}
    manifest = tmp_path / "edits.jsonl"
    manifest.write_text(json.dumps({"image": "photo.png", **config}) + "\n")
    out = tmp_path / "out"
    assert main(["batch", str(manifest), "--out", str(out), "--local", "--demo",
                 "--demo-dir", str(tiny_dir), "--log-level", "warning"]) == 0
    live = serve(engine=tiny_engine)
    reply = post_job(live.url, config, photo.read_bytes(), "image/png")
    assert reply.status_code == 200, reply.text
    assert (out / "photo.png").read_bytes() == reply.content


def test_a_type_column_runs_rows_on_klein_beside_kontext(
        tmp_path: Path, tiny_dir: Path) -> None:
    (tmp_path / "a.png").write_bytes(gradient_png(400, 300))
    manifest = tmp_path / "edits.jsonl"
    rows = [{"image": "a.png", "prompt": "make it red", "steps": 1, "output": "dev.png",
             "width": 512, "height": 512},
            {"image": "a.png", "prompt": "make it red", "output": "klein.png",
             "type": "inference.flux-2.klein.4b.img2img.v1"}]
    manifest.write_text("".join(json.dumps(row) + "\n" for row in rows))
    out = tmp_path / "out"
    code = main(["batch", str(manifest), "--out", str(out), "--local", "--demo",
                 "--demo-dir", str(tiny_dir), "--models", "kontext-dev,klein-4b",
                 "--log-level", "warning"])
    dev, klein = _report(out / "report.jsonl")
    assert code == 0, (dev, klein)
    assert klein["config"]["steps"] == 4 and klein["config"].get("width") is None
    with Image.open(out / "klein.png") as image:
        assert image.size == (400, 288)  # its input's, in multiples of 16
    with Image.open(out / "dev.png") as image:
        assert image.size == (512, 512)
