"""What an output's "made with AI" marks say: the Disclosure record, shared by the XMP/EXIF
marks (media/disclosure.py) and the C2PA manifest (media/c2pa_signing.py)."""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version

IPTC_SOURCE_TYPES = "http://cv.iptc.org/newscodes/digitalsourcetype/"
#: An edit of a supplied image, and an image made from a prompt alone.
EDITED = IPTC_SOURCE_TYPES + "compositeWithTrainedAlgorithmicMedia"
GENERATED = IPTC_SOURCE_TYPES + "trainedAlgorithmicMedia"
MODEL = "FLUX.1 Kontext [dev]"
MODEL_MAKER = "Black Forest Labs"


def _server_version() -> str:
    try:
        return version("kontext-server")
    except PackageNotFoundError:
        return "unknown"


SOFTWARE = f"kontext-server {_server_version()}"


@dataclass(frozen=True)
class Disclosure:
    """What the marks of one output say.

    `edited`: the output is an edit of an input image (DigitalSourceType
    compositeWithTrainedAlgorithmicMedia, C2PA c2pa.edited) rather than made from a prompt
    alone (trainedAlgorithmicMedia, c2pa.created). `prompt` is written only when set: pass
    it only when the operator allows it (disclosure_include_prompt).
    """

    edited: bool
    model: str = MODEL
    software: str = SOFTWARE
    prompt: str | None = None

    @property
    def source_type(self) -> str:
        """The IPTC digital source type URI."""
        return EDITED if self.edited else GENERATED
