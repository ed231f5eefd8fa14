"""`loras` in `kontext batch` manifests and flags: JSONL as in the job config, CSV and
--loras as `name:scale;name2`, validated with the server's rules."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers.images import gradient_png

from server.cli.batch.args import config_defaults
from server.cli.batch.manifest import BadRow, Row, loras_text, read_manifest
from server.cli.batch.validate import resolve_rows
from server.cli.main import build_parser


@pytest.mark.parametrize(("text", "entries"), [
    ("styles/ghibli:0.8;relight", [{"name": "styles/ghibli", "scale": 0.8}, "relight"]),
    (" a : -1 ; b ", [{"name": "a", "scale": -1.0}, "b"]),
    ("c:d:2", [{"name": "c:d", "scale": 2.0}]),  # the scale follows the last colon
    ("time:of:day", ["time:of:day"]),  # not a number: part of the name
])
def test_the_csv_syntax(text, entries):
    assert loras_text(text) == entries


def test_manifest_rows_with_loras(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(gradient_png(320, 256))
    csv = tmp_path / "edits.csv"
    csv.write_text("image,prompt,loras,output\n"
                   "a.png,make it red,red:0.5;blue,one.png\n"
                   "a.png,make it red,red:9,two.png\n"
                   "a.png,make it red,,three.png\n")
    jsonl = tmp_path / "edits.jsonl"
    jsonl.write_text(json.dumps({"image": "a.png", "prompt": "make it red", "output": "four.png",
                                 "loras": ["red", {"name": "blue", "scale": -1}]}) + "\n")
    rows = [row for manifest in (csv, jsonl)
            for row in resolve_rows(read_manifest(manifest), {}, tmp_path, tmp_path / "out")]
    one, two, three, four = rows
    assert isinstance(one, Row) and one.config.model_dump(exclude_none=True)["loras"] == [
        {"name": "red", "scale": 0.5}, "blue"]
    assert isinstance(two, BadRow)
    assert two.error == "config.loras[0].scale: must be at most 2, got 9.0"
    assert isinstance(three, Row) and three.config.loras is None
    assert isinstance(four, Row) and four.config.model_dump()["loras"] == [
        "red", {"name": "blue", "scale": -1.0}]


def test_the_loras_flag_is_a_default_for_every_row(tmp_path: Path) -> None:
    args = build_parser().parse_args(["batch", "--images", str(tmp_path), "--prompt", "x",
                                      "--out", str(tmp_path / "o"), "--local", "--demo",
                                      "--loras", "red:0.5;blue", "--lora-dir", str(tmp_path)])
    assert config_defaults(args)["loras"] == [{"name": "red", "scale": 0.5}, "blue"]
    assert args.lora_dir == str(tmp_path)
