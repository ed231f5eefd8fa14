"""The image fuzzer: real PNG, JPEG (with EXIF), WebP and MPO files, and files of formats
outside the contract (GIF, BMP, TIFF, DDS, Spider, …), mutated by hypothesis (bytes
overwritten, mostly in the headers; cut short; bytes inserted) and sent as the `input` of a
real job to a real server. Never a 5xx; afterwards the server still serves a good job.

Bounded for CI: CASES examples (benchmarks/RESULTS.md, "Fuzz suite", says what a run costs).
"""

from __future__ import annotations

import io
import struct
from collections import Counter

import httpx2
import pytest
from helpers.bad_files import exif_segment, jpeg_rotated_with_mistyped_tag
from helpers.fake_engine import FakeEngine
from helpers.http import DEV, job_part
from helpers.images import gradient_png
from helpers.live_server import LiveServer, start_server
from helpers.servers import make_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from server.api.app import create_app

CASES = 300
CONFIG = {"prompt": "make it red", "width": 512, "height": 512, "steps": 1}
#: Where mutations land: the header (half of them) and the first chunks, where readers make
#: their decisions.
HEAD = 2048


def _saved(image: Image.Image, fmt: str, **options) -> bytes | None:
    buffer = io.BytesIO()
    try:
        image.save(buffer, fmt, **options)
    except (OSError, KeyError, ValueError):
        return None  # a writer this Pillow build lacks
    return buffer.getvalue()


def seed_files() -> dict[str, bytes]:
    """One small real file per format: the contract's, and others Pillow writes."""
    photo = Image.open(io.BytesIO(gradient_png(320, 288))).convert("RGB")
    rotated = exif_segment([(0x0112, 3, 1, struct.pack("<H", 6))])
    files = {
        "png": _saved(photo, "PNG"),
        "png-rgba": _saved(photo.convert("RGBA"), "PNG"),
        "jpeg-exif": _saved(photo, "JPEG", exif=rotated),
        "jpeg-exif-mistyped": jpeg_rotated_with_mistyped_tag(320, 288),
        "jpeg-progressive": _saved(photo, "JPEG", progressive=True),
        "webp": _saved(photo, "WEBP"),
        "webp-lossless": _saved(photo, "WEBP", lossless=True),
        "mpo": _saved(photo, "MPO", save_all=True, append_images=[photo.rotate(90)]),
        "gif": _saved(photo, "GIF"), "bmp": _saved(photo, "BMP"),
        "tiff": _saved(photo, "TIFF"), "ico": _saved(photo, "ICO"),
        "tga": _saved(photo, "TGA"), "pcx": _saved(photo, "PCX"), "ppm": _saved(photo, "PPM"),
        "sgi": _saved(photo, "SGI"), "dds": _saved(photo.convert("RGBA"), "DDS"),
        "spider": _saved(photo.convert("F"), "SPIDER"), "qoi": _saved(photo, "QOI"),
        "jpeg2000": _saved(photo, "JPEG2000"),
    }
    return {name: data for name, data in files.items() if data}


SEEDS = seed_files()


@st.composite
def mutated(draw) -> tuple[str, bytes]:
    """A seed file with 1–6 mutations: overwrite, cut, insert."""
    name = draw(st.sampled_from(sorted(SEEDS)))
    data = bytearray(SEEDS[name])
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["overwrite", "overwrite", "overwrite", "cut", "insert"]))
        at = draw(st.integers(0, min(len(data), 128) - 1)  # the header itself
                  | st.integers(0, min(len(data), HEAD) - 1))
        if kind == "overwrite":
            data[at:at + 4] = draw(st.binary(min_size=1, max_size=4))
        elif kind == "cut":
            del data[draw(st.integers(at, len(data) - 1)):]
        else:
            data[at:at] = draw(st.binary(min_size=1, max_size=64))
        if not data:
            data = bytearray(b"\0")
    return name, bytes(data)


@pytest.fixture(scope="module")
def live() -> LiveServer:
    server = start_server(create_app(make_settings(), FakeEngine()))
    yield server
    server.stop()


def send(url: str, data: bytes) -> httpx2.Response:
    files = [("input", ("input.bin", data, "application/octet-stream")), job_part(CONFIG)]
    return httpx2.post(f"{url}/v2/job", files=files, headers={"Accept": "application/json"},
                      timeout=60)


def test_mutated_images_never_get_a_5xx(live):
    statuses: Counter[tuple[str, int]] = Counter()

    @given(mutated())
    @settings(max_examples=CASES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    def case(sample: tuple[str, bytes]) -> None:
        name, data = sample
        reply = send(live.url, data)
        statuses[(name, reply.status_code)] += 1
        assert reply.status_code < 500, (name, reply.status_code, reply.text[:300])
        if reply.status_code == 400:
            assert reply.json()["error"].startswith("input"), reply.text[:300]

    case()
    assert sum(statuses.values()) >= CASES
    # The seeds themselves: the contract's formats are served, the others refused by name.
    for name, data in SEEDS.items():
        reply = send(live.url, data)
        ours = name.split("-")[0] in ("png", "jpeg", "webp", "mpo")
        assert reply.status_code == (200 if ours else 400), (name, reply.text[:300])
    good = send(live.url, SEEDS["png"])
    assert good.status_code == 200 and good.json()["type"] == DEV
