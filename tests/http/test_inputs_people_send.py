"""The photos phones really send and the forms clients really post: an MPO JPEG (two
pictures in one file) is its first picture; an `input` part without a filename, or with a
generic content type, is read as a file and sniffed by its bytes; animations stay refused."""

from __future__ import annotations

import io
import json

import httpx2
import pytest
from helpers.fake_engine import FakeEngine
from helpers.http import DEV, image_of, post_job
from PIL import Image

CONFIG = {"prompt": "make it green", "width": 512, "height": 512, "steps": 1}


def mpo_photo() -> bytes:
    """A multi-picture JPEG as phone cameras write: the photo, then a smaller second one."""
    photo = Image.new("RGB", (640, 480), (200, 20, 20))
    second = Image.new("RGB", (320, 240), (20, 20, 200))
    buffer = io.BytesIO()
    photo.save(buffer, "MPO", save_all=True, append_images=[second])
    return buffer.getvalue()


def animated(fmt: str) -> bytes:
    frames = [Image.new("RGB", (300, 300), color) for color in ((255, 0, 0), (0, 0, 255))]
    buffer = io.BytesIO()
    frames[0].save(buffer, fmt, save_all=True, append_images=frames[1:], duration=100)
    return buffer.getvalue()


def hand_made_multipart(image: bytes, input_headers: str) -> tuple[bytes, str]:
    """`input` part with exactly `input_headers`, then the `job` part."""
    boundary = "----edge16boundary"
    job = json.dumps({"type": DEV, "config": CONFIG}).encode()
    body = (f"--{boundary}\r\n{input_headers}\r\n\r\n".encode() + image
            + f"\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"job\"\r\n\r\n"
            .encode() + job + f"\r\n--{boundary}--\r\n".encode())
    return body, f"multipart/form-data; boundary={boundary}"


def test_an_mpo_photo_is_its_first_picture(serve):
    live = serve()
    data = mpo_photo()
    assert Image.open(io.BytesIO(data)).n_frames == 2
    reply = post_job(live.url, CONFIG, data, accept="image/png")
    assert reply.status_code == 200, reply.text
    # The fake engine pastes a corner of its input: the photo's red, not the second blue.
    assert image_of(reply.content).convert("RGB").getpixel((5, 5))[0] > 150


@pytest.mark.parametrize("input_headers", [
    'Content-Disposition: form-data; name="input"',
    'Content-Disposition: form-data; name="input"\r\nContent-Type: application/octet-stream',
    'Content-Disposition: form-data; name="input"; filename="blob"\r\n'
    'Content-Type: application/octet-stream',
], ids=["no-filename", "no-filename-octet-stream", "generic-filename-and-type"])
def test_an_input_part_is_sniffed_by_its_bytes(serve, input_headers):
    live = serve()
    body, content_type = hand_made_multipart(mpo_photo(), input_headers)
    reply = httpx2.post(f"{live.url}/v2/job", content=body,
                       headers={"Content-Type": content_type, "Accept": "image/png"})
    assert reply.status_code == 200, reply.text


def test_curl_form_field_from_a_file_is_an_input(serve, tmp_path):
    """What `curl -F input=<photo.jpg` sends: the file's bytes as a plain form field."""
    import shutil
    import subprocess

    curl = shutil.which("curl")
    if curl is None:  # scripts/install.sh --test installs it
        pytest.fail("curl is not installed (Debian: apt-get install curl)")
    live = serve()
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(mpo_photo())
    job = json.dumps({"type": DEV, "config": CONFIG})
    done = subprocess.run(
        [curl, "-s", "-o", str(tmp_path / "out.png"), "-w", "%{http_code}",
         "-H", "Accept: image/png", "-F", f"input=<{photo}", "-F", f"job={job}",
         f"{live.url}/v2/job"], capture_output=True, text=True, timeout=60, check=False)
    assert done.stdout == "200", (done.stdout, done.stderr)
    assert image_of((tmp_path / "out.png").read_bytes()).size == (512, 512)


@pytest.mark.parametrize(("fmt", "words"), [
    ("GIF", "is GIF; only PNG, JPEG and WebP are accepted"),
    ("WEBP", "is animated (2 frames)"),
    ("PNG", "is animated (2 frames)"),  # APNG
])
def test_animations_stay_refused(serve, fmt, words):
    live = serve()
    reply = post_job(live.url, CONFIG, animated(fmt), accept="application/json")
    assert reply.status_code == 400, reply.text
    assert words in reply.json()["error"]


def phone_photo(stored=(4032, 3024), orientation: int | None = None) -> bytes:
    """A phone-sized JPEG (the hosted API, and this server by default, refuse it)."""
    buffer = io.BytesIO()
    exif = Image.Exif()
    if orientation:
        exif[0x0112] = orientation
    Image.new("RGB", stored, (30, 160, 60)).save(buffer, "JPEG", quality=80, exif=exif)
    return buffer.getvalue()


def test_a_phone_photo_is_refused_by_default_and_shrunk_when_the_operator_allows(serve):
    refused = post_job(serve().url, CONFIG, phone_photo(), accept="application/json")
    assert refused.status_code == 400
    assert refused.json()["error"] == "input: is 4032x3024; each side must be at most 1920 px"
    engine = FakeEngine()
    live = serve(engine, downscale_inputs=True)
    for orientation, shown in ((None, (1920, 1440)), (6, (1440, 1920))):
        reply = post_job(live.url, CONFIG, phone_photo(orientation=orientation),
                         accept="application/json")
        assert reply.status_code == 200, reply.text
        assert engine.requests[-1].image.size == shown  # upright, shape kept
    # Too long and thin to keep a 256 px short side at 1920 px: refused, saying why.
    thin = post_job(live.url, CONFIG, phone_photo((4000, 400)), accept="application/json")
    assert thin.status_code == 400
    assert thin.json()["error"] == ("input: is 4000x400; brought down to 1920 px its short "
                                    "side would be under 256 px")

