"""What our command-line clients send for a photo: within the limits a /v2/job server
takes (shrunk, shape kept, upright), and, with no size asked for, an output of its shape."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from PIL import Image

from server.cli.photos import output_size, photo_shape, read_photo, with_photo_size
from server.media.decode import ImageLimits, decode_input_image

LIMITS = ImageLimits()


def save(path: Path, size: tuple[int, int], fmt: str = "JPEG", mode: str = "RGB",
         orientation: int | None = None) -> Path:
    image = Image.new(mode, size, (30, 120, 200, 128)[: len(mode)])
    exif = Image.Exif()
    if orientation:
        exif[0x0112] = orientation
    image.save(path, fmt, exif=exif) if fmt == "JPEG" else image.save(path, fmt)
    return path


def test_a_photo_within_the_limits_is_sent_byte_for_byte(tmp_path: Path) -> None:
    path = save(tmp_path / "small.jpg", (800, 600))
    photo = read_photo(path, LIMITS)
    assert (photo.data, photo.name, photo.size) == (path.read_bytes(), "small.jpg", (800, 600))
    assert photo.note is None and photo.shrunk() is None


def test_a_phone_photo_is_shrunk_to_1920_keeping_its_shape(tmp_path: Path) -> None:
    photo = read_photo(save(tmp_path / "IMG_1.jpg", (4032, 3024)), LIMITS)
    sent = Image.open(io.BytesIO(photo.data))
    assert (sent.format, sent.size, photo.name) == ("JPEG", (1920, 1440), "IMG_1.jpg")
    assert photo.note == ("IMG_1.jpg is 4032x3024, over the 1920 px a side a /v2/job server "
                          "takes: sent as 1920x1440, same shape")
    assert photo.shrunk() == {"image": "IMG_1.jpg", "from": [4032, 3024], "sent": [1920, 1440]}
    assert photo.shape == (4032, 3024)
    decode_input_image(photo.data)  # what a server with the default rules accepts


def test_a_rotated_photo_is_sent_upright(tmp_path: Path) -> None:
    path = save(tmp_path / "portrait.jpg", (4032, 3024), orientation=6)
    assert photo_shape(path) == (3024, 4032)
    photo = read_photo(path, LIMITS)
    assert photo.size == (1440, 1920)
    # The server applies EXIF orientation again: the bytes must carry none left to apply.
    assert decode_input_image(photo.data).size == (1440, 1920)


def test_png_and_webp_stay_lossless_with_their_transparency(tmp_path: Path) -> None:
    for name, fmt in (("logo.png", "PNG"), ("logo.webp", "WEBP")):
        photo = read_photo(save(tmp_path / name, (2500, 2500), fmt, "RGBA"), LIMITS)
        sent = Image.open(io.BytesIO(photo.data))
        assert (sent.format, sent.mode, sent.size) == ("PNG", "RGBA", (1920, 1920))
        assert photo.name == "logo.png"


def test_a_file_over_the_byte_limit_is_re_encoded(tmp_path: Path) -> None:
    noise = tmp_path / "noise.png"
    Image.frombytes("RGB", (1200, 1200), os.urandom(1200 * 1200 * 3)).save(noise)
    limits = ImageLimits(max_bytes=2 * 1024 * 1024)
    assert noise.stat().st_size > limits.max_bytes
    photo = read_photo(noise, limits)
    assert photo.size == (1200, 1200) and photo.note.startswith("noise.png is 4.1 MB, over the")
    assert "sent re-encoded" in photo.note


def test_an_unreadable_file_is_sent_as_is_for_the_server_to_judge(tmp_path: Path) -> None:
    path = tmp_path / "notes.jpg"
    path.write_bytes(b"not an image")
    photo = read_photo(path, LIMITS)
    assert (photo.data, photo.size, photo.note) == (b"not an image", None, None)


@pytest.mark.parametrize(("shape", "size"), [
    ((4032, 3024), (1040, 784)), ((3024, 4032), (784, 1040)), ((1920, 1080), (1040, 592)),
    ((1000, 1000), (1024, 1024)), ((6000, 1000), (1040, 512)),
])
def test_the_output_is_the_photos_shape_at_about_one_megapixel(shape, size) -> None:
    assert output_size(shape) == size


def test_a_size_asked_for_wins_over_the_photos_shape() -> None:
    assert with_photo_size({"prompt": "p"}, (4032, 3024)) == {"prompt": "p", "width": 1040,
                                                              "height": 784}
    for given in ({"width": 512}, {"height": 640}, {"aspect_ratio": "1:1"}):
        assert with_photo_size({"prompt": "p", **given}, (4032, 3024)) == {"prompt": "p",
                                                                          **given}
    assert with_photo_size({"prompt": "p"}, None) == {"prompt": "p"}
