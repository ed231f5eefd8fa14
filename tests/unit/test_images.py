"""Input image rules: formats, limits, orientation, transparency and mode conversion."""

import io

import pytest
from helpers.images import image_bytes
from PIL import Image

from server.errors import InvalidInputImage
from server.media.decode import decode_input_image
from server.media.encode import encode_image


def decode(data: bytes) -> Image.Image:
    return decode_input_image(data, "input")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_accepted_formats_decode_to_rgb(fmt):
    image = decode(image_bytes(640, 480, fmt))
    assert image.mode == "RGB" and image.size == (640, 480)


def test_exif_orientation_is_applied():
    source = Image.new("RGB", (600, 300), (10, 20, 30))
    exif = source.getexif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    buffer = io.BytesIO()
    source.save(buffer, "JPEG", exif=exif)
    assert decode(buffer.getvalue()).size == (300, 600)


def test_transparency_is_composited_on_white():
    image = decode(image_bytes(300, 300, "PNG", mode="RGBA", color=(0, 0, 0, 0)))
    assert image.getpixel((5, 5)) == (255, 255, 255)


def test_palette_with_transparency_is_composited_on_white():
    source = Image.new("P", (300, 300), 0)
    source.putpalette([0, 0, 0] * 256)
    buffer = io.BytesIO()
    source.save(buffer, "PNG", transparency=0)
    assert decode(buffer.getvalue()).getpixel((0, 0)) == (255, 255, 255)


def test_cmyk_jpeg_is_converted():
    image = decode(image_bytes(300, 300, "JPEG", mode="CMYK", color=(0, 255, 255, 0)))
    red, green, blue = image.getpixel((10, 10))
    assert image.mode == "RGB" and red > 200 and green < 60 and blue < 60


def test_sixteen_bit_png_keeps_its_brightness():
    image = decode(image_bytes(300, 300, "PNG", mode="I;16", color=32768))
    assert image.mode == "RGB" and abs(image.getpixel((0, 0))[0] - 128) <= 1


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "input: is an empty file"),
        (b"\x89PNG not really" * 20, "input: is not a readable PNG, JPEG or WebP image"),
        (image_bytes(640, 480, "GIF", mode="P", color=1),
         "input: is GIF; only PNG, JPEG and WebP are accepted"),
        (image_bytes(255, 400), "input: is 255x400; each side must be at least 256 px"),
        (image_bytes(1921, 400), "input: is 1921x400; each side must be at most 1920 px"),
        (image_bytes(640, 480)[:300], "input: could not be decoded"),
    ],
    ids=["empty", "garbage", "gif", "too-small", "too-large", "truncated"],
)
def test_bad_images_name_the_input_and_the_rule(data, message):
    with pytest.raises(InvalidInputImage) as caught:
        decode(data)
    assert caught.value.status == 400
    assert str(caught.value).startswith(message)


def test_file_size_limit_is_checked_before_decoding():
    with pytest.raises(InvalidInputImage, match=r"input: is 11\.0 MB, over the 10 MB limit"):
        decode(b"\0" * (11 * 1024 * 1024))


def test_animated_webp_is_refused():
    frames = [Image.new("RGB", (300, 300), c) for c in ((255, 0, 0), (0, 255, 0))]
    buffer = io.BytesIO()
    frames[0].save(buffer, "WEBP", save_all=True, append_images=frames[1:])
    with pytest.raises(InvalidInputImage, match="animated"):
        decode(buffer.getvalue())


def test_progressive_jpeg_is_progressive():
    image = Image.new("RGB", (512, 512), (1, 2, 3))
    progressive = Image.open(io.BytesIO(encode_image(image, "jpeg", progressive=True)))
    baseline = Image.open(io.BytesIO(encode_image(image, "jpeg", progressive=False)))
    assert progressive.info.get("progressive") == 1
    assert "progressive" not in baseline.info


@pytest.mark.parametrize(("fmt", "pil"), [("jpeg", "JPEG"), ("png", "PNG"), ("webp", "WEBP")])
def test_encode_formats(fmt, pil):
    data = encode_image(Image.new("RGB", (512, 544)), fmt)
    decoded = Image.open(io.BytesIO(data))
    assert decoded.format == pil and decoded.size == (512, 544)
