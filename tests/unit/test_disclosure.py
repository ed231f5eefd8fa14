"""Disclosure marks, read back with independent readers: exiftool for XMP/EXIF, c2pa-python's
Reader (with the test CA as trust anchor) for the C2PA manifest."""

from __future__ import annotations

import io

import pytest
from helpers.c2pa_certs import CertChain, write_test_chain
from helpers.marks import actions_of, assert_marks, assert_xmp, exiftool, read_manifest
from PIL import Image

from server.media.c2pa_signing import C2paSigningError, load_c2pa_credentials, sign_c2pa
from server.media.disclosure import encode_marked, mark_encoded
from server.media.encode import encode_image
from server.media.marks import OutputMarks
from server.media.metadata_insert import has_c2pa_manifest
from server.media.provenance import EDITED, GENERATED, Disclosure

FORMATS = [("jpeg", False), ("jpeg", True), ("png", False), ("webp", False)]
PROMPT = "make the sky stormy & <dark> — naïve"


@pytest.fixture(scope="module")
def picture() -> Image.Image:
    return Image.linear_gradient("L").resize((320, 256)).convert("RGB")


@pytest.mark.parametrize(("fmt", "progressive"), FORMATS)
def test_encoded_outputs_carry_the_marks(picture, tmp_path, fmt, progressive) -> None:
    cases = [(True, None), (False, None), (True, PROMPT)]
    blobs = [encode_marked(picture, fmt, Disclosure(edited=edited, prompt=prompt),
                           progressive=progressive) for edited, prompt in cases]
    for tags, (edited, prompt) in zip(exiftool(tmp_path, *blobs), cases, strict=True):
        assert_marks(tags, fmt, edited, prompt)
    for data in blobs:
        decoded = Image.open(io.BytesIO(data))
        assert decoded.size == picture.size
        if fmt == "jpeg":
            assert bool(decoded.info.get("progressive")) is progressive


@pytest.mark.parametrize(("fmt", "progressive"), FORMATS)
def test_marking_encoded_bytes_keeps_every_pixel(picture, tmp_path, fmt, progressive) -> None:
    plain = encode_image(picture, fmt, progressive=progressive)
    marked = mark_encoded(plain, Disclosure(edited=True, prompt=PROMPT))
    assert_marks(exiftool(tmp_path, marked)[0], fmt, True, prompt=PROMPT)
    assert Image.open(io.BytesIO(marked)).tobytes() == Image.open(io.BytesIO(plain)).tobytes()


@pytest.mark.parametrize("save", [
    {"format": "WEBP", "lossless": True},           # simple VP8L with alpha
    {"format": "WEBP", "quality": 80},              # VP8 + ALPH in an extended file
    {"format": "PNG"},
])
def test_bytes_with_alpha_keep_it(tmp_path, save) -> None:
    image = Image.linear_gradient("L").resize((300, 200)).convert("RGBA")
    image.putalpha(Image.linear_gradient("L").resize((300, 200)))
    buffer = io.BytesIO()
    image.save(buffer, **save)
    marked = mark_encoded(buffer.getvalue(), Disclosure(edited=False))
    assert exiftool(tmp_path, marked)[0]["ExifTool:Validate"] == "OK"
    decoded = Image.open(io.BytesIO(marked))
    assert decoded.mode == "RGBA"
    assert decoded.tobytes() == Image.open(buffer).tobytes()


def test_existing_metadata_is_replaced_not_duplicated(picture, tmp_path) -> None:
    once = mark_encoded(encode_image(picture, "jpeg"), Disclosure(edited=False, prompt="a"))
    twice = mark_encoded(once, Disclosure(edited=True))
    (tags,) = exiftool(tmp_path, twice)
    assert_marks(tags, "jpeg", edited=True, prompt=None)
    assert twice.count(b"http://ns.adobe.com/xap/1.0/\x00") == 1
    assert twice.count(b"Exif\x00\x00") == 1


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="not a JPEG, PNG or WebP"):
        mark_encoded(b"GIF89a....", Disclosure(edited=False))


# --- C2PA ---------------------------------------------------------------------------------



@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> CertChain:
    return write_test_chain(tmp_path_factory.mktemp("c2pa"))


@pytest.mark.parametrize(("fmt", "progressive"), FORMATS)
def test_c2pa_created_is_trusted_and_keeps_xmp(picture, tmp_path, chain, fmt, progressive):
    credentials = load_c2pa_credentials(chain.cert_file, chain.key_file)
    data = encode_marked(picture, fmt, Disclosure(edited=False), progressive=progressive,
                         c2pa=credentials)
    store, manifest = read_manifest(data, f"image/{fmt}", chain)
    assert store["validation_state"] == "Trusted"
    (action,) = actions_of(manifest)
    assert action["action"] == "c2pa.created"
    assert action["digitalSourceType"] == GENERATED
    assert action["softwareAgent"]["name"] == "FLUX.1 Kontext [dev]"
    assert manifest["signature_info"]["common_name"] == "kontext test signer"
    assert "thumbnail" not in manifest
    (tags,) = exiftool(tmp_path, data)
    if fmt != "png":
        assert_marks(tags, fmt, False, prompt=None)
        return
    # exiftool 12.57 (Debian 12) stops before the eXIf chunk of a PNG whose C2PA box comes
    # first ("IFD0 pointer references previous JUMBFBox directory": its loop detection keys
    # directories by relative offset). The XMP it reads; the EXIF is read here by Pillow.
    assert tags["ExifTool:Warning"] == "IFD0 pointer references previous JUMBFBox directory"
    assert_xmp(tags, False, prompt=None)
    exif = Image.open(io.BytesIO(data)).getexif()
    assert (exif[0x010F], exif[0x0110]) == ("Black Forest Labs", "FLUX.1 Kontext [dev]")
    assert exif[0x0131].endswith("; AI generated; txt2img")


@pytest.mark.parametrize("fmt", ["jpeg", "png", "webp"])
def test_c2pa_edit_records_the_input_as_parent(picture, chain, fmt) -> None:
    credentials = load_c2pa_credentials(chain.cert_file, chain.key_file)
    parent = encode_image(Image.new("RGB", (300, 300), (200, 100, 50)), "png")
    data = mark_encoded(encode_image(picture, fmt), Disclosure(edited=True),
                        c2pa=credentials, parent=parent)
    store, manifest = read_manifest(data, f"image/{fmt}", chain)
    assert store["validation_state"] == "Trusted"
    assert [a["action"] for a in actions_of(manifest)] == ["c2pa.opened", "c2pa.edited"]
    assert actions_of(manifest)[1]["digitalSourceType"] == EDITED
    (ingredient,) = manifest["ingredients"]
    assert ingredient["relationship"] == "parentOf"
    assert ingredient["format"] == "image/png"


def test_c2pa_edit_without_its_input_says_created_composite(picture, chain) -> None:
    credentials = load_c2pa_credentials(chain.cert_file, chain.key_file)
    data = encode_marked(picture, "jpeg", Disclosure(edited=True), c2pa=credentials)
    store, manifest = read_manifest(data, "image/jpeg", chain)
    assert store["validation_state"] == "Trusted"
    (action,) = actions_of(manifest)
    assert (action["action"], action["digitalSourceType"]) == ("c2pa.created", EDITED)


def test_tampered_pixels_break_the_signature(picture, chain) -> None:
    credentials = load_c2pa_credentials(chain.cert_file, chain.key_file)
    data = bytearray(encode_marked(picture, "png", Disclosure(edited=False), c2pa=credentials))
    idat = data.index(b"IDAT")
    data[idat + 20] ^= 0xFF
    store, _ = read_manifest(bytes(data), "image/png", chain)
    assert store["validation_state"] == "Invalid"


def test_tls_certificate_is_refused_at_load(chain) -> None:
    with pytest.raises(C2paSigningError, match="certificate is invalid"):
        load_c2pa_credentials(chain.tls_cert_file, chain.key_file)


def test_key_that_does_not_match_is_refused_at_load(chain) -> None:
    with pytest.raises(C2paSigningError, match=r"does not verify: claimSignature\.mismatch"):
        load_c2pa_credentials(chain.cert_file, chain.other_key_file)


def test_unreadable_key_is_refused_at_load(chain, tmp_path) -> None:
    bad = tmp_path / "key.pem"
    bad.write_text("not a key")
    with pytest.raises(C2paSigningError, match="not an unencrypted PEM private key"):
        load_c2pa_credentials(chain.cert_file, bad)


def test_algorithm_follows_the_key(chain) -> None:
    assert load_c2pa_credentials(chain.cert_file, chain.key_file).alg == "es256"


# --- The server's marking choices (media/marks.py) ----------------------------------------


@pytest.mark.parametrize("fmt", ["jpeg", "png", "webp"])
def test_an_upstream_c2pa_manifest_is_kept_intact(picture, chain, fmt) -> None:
    credentials = load_c2pa_credentials(chain.cert_file, chain.key_file)
    plain = encode_image(picture, fmt)
    signed = sign_c2pa(plain, f"image/{fmt}", Disclosure(edited=False, model="upstream"),
                       credentials)
    assert (has_c2pa_manifest(plain), has_c2pa_manifest(signed)) == (False, True)
    marks = OutputMarks()
    assert marks.mark(signed, marks.disclosure(True, "a prompt")) == signed  # byte for byte
    assert read_manifest(signed, f"image/{fmt}", chain)[0]["validation_state"] == "Trusted"
    assert has_c2pa_manifest(marks.mark(plain, marks.disclosure(True, "a prompt"))) is False


def test_marks_off_and_prompt_choice(picture, tmp_path) -> None:
    plain = encode_image(picture, "jpeg")
    off = OutputMarks(enabled=False)
    assert off.mark(plain, off.disclosure(True, "p")) == plain
    assert off.encode(picture, "jpeg", off.disclosure(True, "p")) == plain
    with_prompt = OutputMarks(include_prompt=True)
    data = with_prompt.encode(picture, "png", with_prompt.disclosure(False, PROMPT))
    assert_marks(exiftool(tmp_path, data)[0], "png", False, prompt=PROMPT)
    assert OutputMarks().disclosure(True, PROMPT).prompt is None


def test_c2pa_cert_and_key_go_together(chain) -> None:
    from pydantic import ValidationError

    from server.settings import Settings

    with pytest.raises(ValidationError, match="c2pa_cert and c2pa_key go together"):
        Settings(c2pa_cert=chain.cert_file)
    assert Settings(c2pa_cert=chain.cert_file, c2pa_key=chain.key_file).c2pa_key is not None
