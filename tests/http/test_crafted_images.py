"""Crafted input images: only PNG, JPEG (and MPO) and WebP are ever opened, and a decoder or
EXIF failure is a 400 naming the input, or the EXIF is ignored; never a 500."""

from __future__ import annotations

import pytest
from helpers.bad_files import dds_header, jpeg_rotated_with_mistyped_tag, jpeg_with_broken_exif
from helpers.fake_engine import FakeEngine
from helpers.http import job_of, post_job
from helpers.images import image_bytes
from helpers.live_server import LiveServer, start_server
from helpers.servers import make_settings

from server.api.app import create_app

CONFIG = {"prompt": "make it red", "width": 512, "height": 512, "steps": 1}
JSON = "application/json"


@pytest.fixture(scope="module")
def live() -> LiveServer:
    server = start_server(create_app(make_settings(), FakeEngine()))
    yield server
    server.stop()


def test_a_mistyped_exif_tag_does_not_stop_the_rotation(live):
    reply = post_job(live.url, CONFIG, jpeg_rotated_with_mistyped_tag(320, 480), accept=JSON)
    assert reply.status_code == 200, reply.text
    used = job_of(reply)["metrics"]["inputs"][0]
    assert used["width"] > used["height"]  # 320×480 stored, seen turned: landscape


def test_unreadable_exif_is_ignored(live):
    reply = post_job(live.url, CONFIG, jpeg_with_broken_exif(320, 480), accept=JSON)
    assert reply.status_code == 200, reply.text
    used = job_of(reply)["metrics"]["inputs"][0]
    assert used["width"] < used["height"]  # as stored


@pytest.mark.parametrize(("data", "message"), [
    (dds_header(), "input: is DDS; only PNG, JPEG and WebP are accepted"),
    (image_bytes(300, 300, "SPIDER", mode="F", color=1.0),
     "input: is not a readable PNG, JPEG or WebP image"),
    (image_bytes(300, 300, "TIFF"), "input: is TIFF; only PNG, JPEG and WebP are accepted"),
], ids=["dds-unsupported-pixel-format", "spider", "tiff"])
def test_other_formats_are_never_opened(live, data, message):
    reply = post_job(live.url, CONFIG, data, accept=JSON)
    assert reply.status_code == 400, reply.text
    assert job_of(reply)["error"] == message
