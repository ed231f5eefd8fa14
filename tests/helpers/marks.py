"""Reading the disclosure marks back with independent readers: exiftool (Debian's
libimage-exiftool-perl) for XMP/EXIF, c2pa-python's Reader for the C2PA manifest."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from helpers.c2pa_certs import CertChain
from server.media.provenance import EDITED, GENERATED, MODEL


def exiftool(tmp_path: Path, *blobs: bytes) -> list[dict]:
    """exiftool's reading of each file (XMP, EXIF, MIME type and its validation verdict),
    one exiftool run for all of them (it starts in about a second)."""
    if shutil.which("exiftool") is None:
        pytest.fail("exiftool is not installed; scripts/install.sh --test installs "
                    "Debian's libimage-exiftool-perl")
    paths = [tmp_path / f"image{i}.bin" for i in range(len(blobs))]
    for path, data in zip(paths, blobs, strict=True):
        path.write_bytes(data)
    done = subprocess.run(["exiftool", "-j", "-G1", "-a", "-validate", "-warning",
                           "-XMP:all", "-EXIF:all", "-File:MIMEType", *map(str, paths)],
                          capture_output=True, text=True, timeout=60, check=True)
    by_file = {Path(tags["SourceFile"]).name: tags for tags in json.loads(done.stdout)}
    return [by_file[path.name] for path in paths]


def assert_marks(tags: dict, fmt: str, edited: bool, prompt: str | None,
                 model: str = MODEL) -> None:
    """exiftool found every mark, and nothing else to complain about."""
    assert tags["File:MIMEType"] == f"image/{fmt}"
    assert tags["ExifTool:Validate"] == "OK"
    assert_xmp(tags, edited, prompt, model)
    assert tags["IFD0:Make"] == "Black Forest Labs"
    assert tags["IFD0:Model"] == model
    assert tags["IFD0:Software"].endswith(
        "; AI generated; " + ("img2img" if edited else "txt2img"))
    if prompt is not None:
        assert tags["IFD0:ImageDescription"] == prompt.encode("ascii", "replace").decode()


def assert_xmp(tags: dict, edited: bool, prompt: str | None, model: str = MODEL) -> None:
    """The XMP marks: digital source type, AI system, creator tool, the prompt if allowed."""
    assert tags["XMP-iptcExt:DigitalSourceType"] == (EDITED if edited else GENERATED)
    assert tags["XMP-iptcExt:AISystemUsed"] == model
    assert tags["XMP-xmp:CreatorTool"].startswith("kontext-server ")
    if prompt is None:
        assert not any("Prompt" in k or "Description" in k for k in tags)
    else:
        assert tags["XMP-iptcExt:AIPromptInformation"] == prompt
        assert tags["XMP-dc:Description"] == prompt


def read_manifest(data: bytes, mime: str, chain: CertChain) -> tuple[dict, dict]:
    """(the whole store as c2pa's Reader reports it, the active manifest), trusting the CA."""
    import c2pa

    context = c2pa.Context.from_dict({"trust": {"user_anchors": chain.ca_pem.decode()},
                                      "verify": {"remote_manifest_fetch": False}})
    with c2pa.Reader(mime, io.BytesIO(data), context=context) as reader:
        store = json.loads(reader.json())
    return store, store["manifests"][store["active_manifest"]]


def actions_of(manifest: dict) -> list[dict]:
    """The actions of a manifest's c2pa.actions assertion."""
    (assertion,) = [a for a in manifest["assertions"] if a["label"].startswith("c2pa.actions")]
    return assertion["data"]["actions"]
