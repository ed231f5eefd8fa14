"""How this server marks the images it returns (docs/safety.md): the operator's choices
(marks on or off, the prompt or not, C2PA credentials or none), applied to images the local
engine made (while they are encoded) and to images an upstream API made (spliced in)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from PIL import Image

from server.media.c2pa_signing import C2paCredentials
from server.media.disclosure import encode_marked, mark_encoded
from server.media.encode import encode_image
from server.media.formats import ImageFormat
from server.media.metadata_insert import has_c2pa_manifest
from server.media.provenance import MODEL, Disclosure


@dataclass(frozen=True)
class OutputMarks:
    """The disclosure marks every output gets (settings `disclosure`,
    `disclosure_include_prompt`, `c2pa_cert`/`c2pa_key`)."""

    enabled: bool = True
    include_prompt: bool = False
    c2pa: C2paCredentials | None = None

    def disclosure(self, edited: bool, prompt: str, model: str = MODEL) -> Disclosure:
        """What one output's marks say; the prompt only when the operator allows it."""
        return Disclosure(edited=edited, model=model,
                          prompt=prompt if self.include_prompt else None)

    def encode(self, image: Image.Image, fmt: ImageFormat, disclosure: Disclosure, *,
               progressive: bool = False, jpeg_quality: int = 92,
               parent: bytes | None = None) -> bytes:
        """Encode an output with the marks (unless marking is off); `parent`: the input
        image's bytes, the C2PA manifest's parent ingredient for an edit."""
        if not self.enabled:
            return encode_image(image, fmt, progressive, jpeg_quality)
        return encode_marked(image, fmt, disclosure, progressive=progressive,
                             jpeg_quality=jpeg_quality, c2pa=self.c2pa, parent=parent)

    def mark(self, data: bytes, disclosure: Disclosure, parent: bytes | None = None) -> bytes:
        """An already-encoded output (a forwarded job's) with the marks spliced in, pixels
        untouched. One that carries upstream's own signed C2PA manifest is returned as it
        is: any splice would break that signature, and upstream's manifest, made by whoever
        generated the image, is the stronger disclosure."""
        if not self.enabled or has_c2pa_manifest(data):
            return data
        return mark_encoded(data, disclosure, c2pa=self.c2pa, parent=parent)

    def status(self) -> dict[str, Any]:
        """For /readyz: whether marks are on, C2PA signed, the prompt included."""
        return {"marks": "on" if self.enabled else "off", "c2pa": self.c2pa is not None,
                "include_prompt": self.include_prompt}
