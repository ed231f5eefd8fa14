"""The limits that are settings, each refusal naming its limit (the full bad-input catalogue
lives in test_bad_inputs.py)."""

from __future__ import annotations

import json
import struct
import zlib

import httpx2
import pytest
from helpers.http import DEV, post_job

from server.errors import InvalidInputImage
from server.media.decode import decode_input_image

CONFIG = {"prompt": "make it green", "width": 512, "height": 512, "steps": 1}


def nested(depth: int) -> dict:
    value: object = 1
    for _ in range(depth - 1):
        value = {"x": value}
    return {"type": DEV, "config": CONFIG, "extra": value}


def test_job_json_size_limit_is_a_413_naming_the_setting(serve):
    live = serve(max_json_bytes=2048)
    big = {**CONFIG, "prompt": "p" * 3000}
    reply = httpx2.post(f"{live.url}/v2/job", json={"type": DEV, "config": big})
    assert reply.status_code == 413, reply.text
    assert "over the 2048-byte limit (max_json_bytes)" in reply.json()["error"]


def test_job_json_depth_limit_is_configurable(serve):
    live = serve(max_json_depth=8)
    reply = httpx2.post(f"{live.url}/v2/job", json=nested(10))
    assert reply.status_code == 400
    assert "nested deeper than 8 levels (max_json_depth)" in reply.json()["error"]
    # Under the limit, depth is not what gets refused (the unknown field is).
    shallow = httpx2.post(f"{live.url}/v2/job", json=nested(6))
    assert shallow.status_code == 400 and "max_json_depth" not in shallow.json()["error"]


def test_decompression_bomb_header_is_refused_before_decoding():
    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", 20_000, 20_000, 8, 2, 0, 0, 0)
    bomb = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")
    with pytest.raises(InvalidInputImage, match="too many pixels"):
        decode_input_image(bomb)


def test_prompt_length_limit_names_the_field(serve):
    live = serve()
    reply = post_job(live.url, {**CONFIG, "prompt": "p" * 4097}, None, "application/json")
    assert reply.status_code == 400
    assert json.loads(reply.text)["error"].startswith("config.prompt: must be at most 4096")
