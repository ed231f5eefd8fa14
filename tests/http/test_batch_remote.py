"""`kontext batch --server` against a real server on loopback (FakeEngine behind it)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import httpx2
import pytest
from helpers.batch_process import interrupt_after_first_output
from helpers.fake_engine import EngineFailure, FakeEngine
from helpers.images import gradient_png
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from server.cli.main import main


def _report(path: Path) -> dict[int, dict]:
    return {line["row"]: line for line in map(json.loads, path.read_text().splitlines())}


def _noise_png(path: Path) -> None:
    Image.frombytes("RGB", (512, 512), os.urandom(512 * 512 * 3)).save(path)


def _served(server, status: str) -> float:
    """How many /v2/job requests the server answered with `status` (its /metrics)."""
    text = httpx2.get(f"{server.url}/metrics").text
    return sum(sample.value for family in text_string_to_metric_families(text)
               for sample in family.samples
               if sample.name == "kontext_http_requests_total"
               and sample.labels == {"route": "/v2/job", "status": status})


def _summary(capsys: pytest.CaptureFixture[str]) -> str:
    return capsys.readouterr().out.strip().splitlines()[-1]


def test_server_mode_429_retry_validation_errors_and_resume(
        tmp_path: Path, serve, capsys: pytest.CaptureFixture[str]) -> None:
    # One job runs, one waits: with 4 in flight the server answers 429 + Retry-After.
    # Its input limit is below the 10 MB contract limit, so one row passes the batch's
    # own checks and is refused by the server (400, never retried).
    server = serve(engine=FakeEngine(step_seconds=0.15), warmup=True, queue_size=1,
                   max_input_bytes=64 * 1024)
    for i in range(5):
        (tmp_path / f"in{i}.png").write_bytes(gradient_png(600, 400))
    _noise_png(tmp_path / "big.png")
    rows = [{"image": f"in{i}.png", "prompt": f"edit number {i}", "width": 512,
             "height": 576, "steps": 2} for i in range(5)]
    rows[0]["seed"] = 1234
    rows[1]["output"] = "second.webp"
    rows += [{"image": "big.png", "prompt": "too big for this server", "width": 512,
              "height": 512, "steps": 1},
             {"image": "in0.png", "prompt": "bad height", "height": 500, "output": "h.png"}]
    manifest = tmp_path / "edits.jsonl"
    manifest.write_text("".join(json.dumps(row) + "\n" for row in rows))
    out = tmp_path / "out"
    argv = ["batch", str(manifest), "--out", str(out), "--server", server.url,
            "--concurrency", "4"]

    assert main(argv) == 1
    assert _summary(capsys).startswith("kontext batch: 7 rows: 5 ok, 0 skipped, 2 failed")
    report = _report(out / "report.jsonl")
    assert [report[n]["status"] for n in range(1, 8)] == ["ok"] * 5 + ["failed"] * 2
    assert max(report[n]["attempts"] for n in range(1, 6)) > 1  # some rows met a 429
    assert report[1]["config"]["seed"] == 1234
    assert all(isinstance(report[n]["config"]["seed"], int) for n in range(1, 6))
    assert all(report[n]["job_id"] and report[n]["metrics"]["elapsed"] > 0 for n in range(1, 6))
    assert report[6]["error"].startswith("HTTP 400: input: is ") and "limit" in report[6]["error"]
    # The 400 is never retried: the server answered exactly one (row 7 is refused before it
    # is sent). A 429 before it, on a loaded machine, is retried and counted in attempts.
    assert _served(server, "400") == 1
    assert report[7]["error"] == "config.height: must be a multiple of 16, got 500"
    for name in ("in0.png", "second.webp", "in2.png", "in3.png", "in4.png"):
        with Image.open(out / name) as image:
            assert image.size == (512, 576)
    # The report's seed is the one the engine used: the fake engine paints the colour
    # sha256("seed|prompt"), given (row 1) or drawn at run time (row 3).
    for n, name in ((1, "in0.png"), (3, "in2.png")):
        config = report[n]["config"]
        digest = hashlib.sha256(f"{config['seed']}|{config['prompt']}".encode()).digest()
        with Image.open(out / name) as image:
            assert image.getpixel((300, 300)) == tuple(digest[:3])

    # Resume: done rows are skipped, bad rows fail again, nothing is re-sent.
    assert main(argv) == 1
    assert _summary(capsys).startswith("kontext batch: 7 rows: 0 ok, 5 skipped, 2 failed")
    again = _report(out / "report.jsonl")
    assert [again[n]["status"] for n in range(1, 6)] == ["skipped"] * 5
    assert [again[n]["config"]["seed"] for n in range(1, 6)] == \
        [report[n]["config"]["seed"] for n in range(1, 6)]


def test_server_errors_are_retried_a_bounded_number_of_times(
        tmp_path: Path, serve, capsys: pytest.CaptureFixture[str]) -> None:
    engine = FakeEngine()
    engine.fail_next = [EngineFailure("boom")] * 3
    server = serve(engine=engine)
    (tmp_path / "a.png").write_bytes(gradient_png(600, 400))
    manifest = tmp_path / "edits.csv"
    manifest.write_text("image,prompt,width,height,steps,output\n"
                        "a.png,first row,512,512,1,one.png\n"
                        "a.png,second row,512,512,1,two.png\n")
    out = tmp_path / "out"
    code = main(["batch", str(manifest), "--out", str(out), "--server", f"{server.url}/v2",
                 "--concurrency", "1", "--retries", "1"])
    assert code == 1
    report = _report(out / "report.jsonl")
    # Row 1: 500, retried once, 500 again → failed. Row 2: 500, then ok on the retry.
    assert report[1]["status"] == "failed" and report[1]["attempts"] == 2
    assert report[1]["error"].startswith("HTTP 500: the job failed while running")
    assert report[2]["status"] == "ok" and report[2]["attempts"] == 2
    assert len(engine.requests) == 4 and not (out / "one.png").exists()


def test_a_row_with_several_images_sends_them_in_order(tmp_path: Path, serve) -> None:
    engine = FakeEngine()
    server = serve(engine=engine)
    sizes = {"scene.png": (640, 480), "cat.png": (300, 400), "hat.png": (400, 256),
             "tiny.png": (200, 300)}
    for name, size in sizes.items():
        (tmp_path / name).write_bytes(gradient_png(*size))
    rows = [{"image": ["scene.png", "cat.png", "hat.png"], "prompt": "the cat wears the hat",
             "reference_method": "stitch", "width": 512, "height": 512, "steps": 1},
            {"image": ["scene.png", "tiny.png"], "prompt": "too small a reference",
             "output": "small.png"}]
    manifest = tmp_path / "edits.jsonl"
    manifest.write_text("".join(json.dumps(row) + "\n" for row in rows))
    out = tmp_path / "out"
    assert main(["batch", str(manifest), "--out", str(out), "--server", server.url]) == 1
    (request,) = engine.requests
    assert [request.image.size, *(image.size for image in request.references)] == [
        sizes["scene.png"], sizes["cat.png"], sizes["hat.png"]]
    assert request.reference_method == "stitch"
    report = _report(out / "report.jsonl")
    assert report[1]["status"] == "ok" and report[1]["image"] == [
        str((tmp_path / name).resolve()) for name in ("scene.png", "cat.png", "hat.png")]
    assert len(report[1]["metrics"]["inputs"]) == 3
    # Checked here with the server's rules, before sending: named as the row names it.
    assert report[2]["error"].startswith("image[1]: is 200x300; each side must be at least")


def test_a_refused_token_stops_the_batch(tmp_path: Path, serve,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    server = serve(tokens=["s3cret-token-0f1e"])
    for i in range(3):
        (tmp_path / f"a{i}.png").write_bytes(gradient_png(600, 400))
    common = ["batch", "--images", str(tmp_path), "--prompt", "make it red", "--width", "512",
              "--height", "512", "--steps", "1", "--server", server.url, "--concurrency", "1"]
    assert main([*common, "--out", str(tmp_path / "wrong"), "--token", "nope"]) == 1
    captured = capsys.readouterr()
    assert "refused the token" in captured.err
    report = _report(tmp_path / "wrong" / "report.jsonl")
    assert list(report) == [1]  # the other rows were not sent
    assert report[1]["error"] == "HTTP 401: token is invalid" and report[1]["attempts"] == 1

    assert main([*common, "--out", str(tmp_path / "right"), "--token", "s3cret-token-0f1e"]) == 0
    assert _summary(capsys).startswith("kontext batch: 3 rows: 3 ok")


def test_ctrl_c_lets_jobs_in_flight_finish_and_starts_no_more(tmp_path: Path, serve) -> None:
    engine = FakeEngine(step_seconds=0.3)
    server = serve(engine=engine)
    images = tmp_path / "photos"
    images.mkdir()
    for i in range(8):
        (images / f"p{i}.png").write_bytes(gradient_png(600, 400))
    out = tmp_path / "out"
    returncode, stdout, stderr = interrupt_after_first_output(
        ["batch", "--images", str(images), "--prompt", "make it red", "--width", "512",
         "--height", "512", "--steps", "2", "--out", str(out), "--server", server.url,
         "--concurrency", "2"], out, timeout=60)
    assert returncode == 130, stderr
    assert "waiting for the jobs in flight to finish" in stderr
    report = _report(out / "report.jsonl")
    # Rows 1 and 2 started together, so row 2 was in flight when row 1's output appeared.
    assert 2 <= len(report) < 8 and all(line["status"] == "ok" for line in report.values())
    # Every job that was sent finished and was written; nothing was left half-done.
    assert len(engine.requests) == len(report)
    written = sorted(p.name for p in out.iterdir())
    assert written == sorted([Path(line["output"]).name for line in report.values()]
                             + ["report.jsonl"])
    assert f"interrupted with {8 - len(report)} rows not run" in stdout


def test_server_mode_sends_a_row_with_an_aspect_ratio_as_the_ratio(tmp_path: Path, serve) -> None:
    # The row's config is validated once; what is sent is the config as written (seed
    # resolved), not a dump with the width and height the ratio decided, which a server
    # refuses ("cannot be combined with width or height").
    engine = FakeEngine()
    server = serve(engine=engine)
    (tmp_path / "a.png").write_bytes(gradient_png(600, 400))
    manifest = tmp_path / "edits.jsonl"
    manifest.write_text(json.dumps({"image": "a.png", "prompt": "make it wide",
                                    "aspect_ratio": "16:9", "steps": 1}) + "\n")
    out = tmp_path / "out"
    assert main(["batch", str(manifest), "--out", str(out), "--server", server.url]) == 0
    (line,) = _report(out / "report.jsonl").values()
    assert line["status"] == "ok", line
    assert line["config"]["aspect_ratio"] == "16:9"
    assert [(r.width, r.height) for r in engine.requests] == [(1040, 592)]
    with Image.open(out / "a.png") as image:
        assert image.size == (1040, 592)


def test_photos_are_shrunk_to_the_servers_limit_and_keep_their_shape(
        tmp_path: Path, serve, capsys: pytest.CaptureFixture[str]) -> None:
    engine = FakeEngine()
    server = serve(engine=engine)
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.new("RGB", (4032, 3024), (90, 140, 200)).save(photos / "phone.jpg", quality=80)
    (photos / "tall.png").write_bytes(gradient_png(600, 800))
    out = tmp_path / "out"
    argv = ["batch", "--images", str(photos), "--prompt", "add a hat", "--out", str(out),
            "--server", server.url, "--steps", "1", "--concurrency", "1"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "kontext batch: 1 photo(s) over the size a /v2/job server takes were shrunk" in printed
    report = _report(out / "report.jsonl")
    assert report[1]["shrunk"] == [{"image": "phone.jpg", "from": [4032, 3024],
                                    "sent": [1920, 1440]}]
    assert "shrunk" not in report[2]
    # No size given: each photo's own shape at about 1 MP, the nearest valid size.
    assert [(report[n]["config"]["width"], report[n]["config"]["height"]) for n in (1, 2)] == [
        (1040, 784), (784, 1040)]
    assert sorted(request.image.size for request in engine.requests) == [(600, 800),
                                                                         (1920, 1440)]
    for name, size in (("phone.png", (1040, 784)), ("tall.png", (784, 1040))):
        with Image.open(out / name) as image:
            assert image.size == size
