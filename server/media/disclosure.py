"""Machine-readable "made with AI" marks on output images (FLUX.1 [dev] licence §2(e)(ii),
EU AI Act Art. 50(2)).

Every output carries XMP with IPTC's DigitalSourceType and the AI system used, and EXIF
Make/Model/Software naming the model and this server; the prompt only when the operator
allows it. Optionally a C2PA manifest signed with the operator's certificate is added on
top (server/media/c2pa_signing.py). Two entry points:

  * encode_marked(image, fmt, disclosure)  encodes a PIL image with the marks (Pillow writes
    them while encoding: no extra pass over the pixels);
  * mark_encoded(data, disclosure)         adds them to already-encoded bytes, losslessly.
"""

from __future__ import annotations

import re
from xml.sax.saxutils import escape, quoteattr

from PIL import ExifTags, Image
from PIL.PngImagePlugin import PngInfo
from PIL.TiffImagePlugin import IFDRational

from server.media.c2pa_signing import C2paCredentials, sign_c2pa
from server.media.encode import encode_image
from server.media.formats import MEDIA_TYPES, ImageFormat
from server.media.metadata_insert import insert_metadata, sniff_format
from server.media.provenance import MODEL_MAKER, Disclosure

XMP_KEY = "XML:com.adobe.xmp"
# XML 1.0 forbids most C0 controls even escaped; a prompt may contain them.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def xmp_packet(disclosure: Disclosure) -> bytes:
    """The XMP packet (UTF-8): Iptc4xmpExt DigitalSourceType and AISystemUsed,
    xmp:CreatorTool, and with a prompt Iptc4xmpExt:AIPromptInformation and dc:description."""
    prompt = ""
    if disclosure.prompt is not None:
        text = escape(_NOT_XML.sub("", disclosure.prompt))
        prompt = (f"\n   <Iptc4xmpExt:AIPromptInformation>{text}</Iptc4xmpExt:AIPromptInformation>"
                  f"\n   <dc:description><rdf:Alt><rdf:li xml:lang=\"x-default\">{text}"
                  "</rdf:li></rdf:Alt></dc:description>")
    return f"""<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about=""
    xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/"
    xmlns:xmp="http://ns.adobe.com/xap/1.0/"
    xmlns:dc="http://purl.org/dc/elements/1.1/"
   Iptc4xmpExt:DigitalSourceType={quoteattr(disclosure.source_type)}
   Iptc4xmpExt:AISystemUsed={quoteattr(_NOT_XML.sub("", disclosure.model))}
   xmp:CreatorTool={quoteattr(_NOT_XML.sub("", disclosure.software))}>{prompt}
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
<?xpacket end="w"?>""".encode()


def exif_block(disclosure: Disclosure) -> Image.Exif:
    """EXIF Make/Model (the model, as Black Forest Labs' reference code writes them),
    Software ("<server>; AI generated; img2img|txt2img") and, with a prompt,
    ImageDescription (ASCII: other characters become '?'; XMP has the exact text)."""
    exif = Image.Exif()
    # The four IFD0 tags EXIF requires of a JPEG; validators warn without them.
    exif[ExifTags.Base.XResolution] = exif[ExifTags.Base.YResolution] = IFDRational(72)
    exif[ExifTags.Base.ResolutionUnit] = 2  # inches
    exif[ExifTags.Base.YCbCrPositioning] = 1  # centred
    exif[ExifTags.Base.Make] = MODEL_MAKER
    exif[ExifTags.Base.Model] = disclosure.model
    kind = "img2img" if disclosure.edited else "txt2img"
    exif[ExifTags.Base.Software] = f"{disclosure.software}; AI generated; {kind}"
    if disclosure.prompt is not None:
        exif[ExifTags.Base.ImageDescription] = disclosure.prompt
    return exif


def pillow_save_params(fmt: ImageFormat, disclosure: Disclosure) -> dict:
    """Keyword arguments for `Image.save` that make Pillow write the marks while encoding:
    `exif=` and `xmp=` for JPEG and WebP; an eXIf chunk and an iTXt XML:com.adobe.xmp chunk
    (uncompressed, as the XMP spec asks) for PNG."""
    exif, xmp = exif_block(disclosure), xmp_packet(disclosure)
    if fmt == "png":
        info = PngInfo()
        info.add_itxt(XMP_KEY, xmp.decode(), zip=False)
        return {"pnginfo": info, "exif": exif}
    return {"exif": exif, "xmp": xmp}


def encode_marked(image: Image.Image, fmt: ImageFormat, disclosure: Disclosure, *,
                  progressive: bool = False, jpeg_quality: int = 92,
                  c2pa: C2paCredentials | None = None, parent: bytes | None = None) -> bytes:
    """Encode an output image carrying the marks; with `c2pa`, also a signed manifest
    (`parent`: the input image's bytes, recorded as the edit's parent ingredient)."""
    data = encode_image(image, fmt, progressive, jpeg_quality,
                        metadata=pillow_save_params(fmt, disclosure))
    return sign_c2pa(data, MEDIA_TYPES[fmt], disclosure, c2pa, parent) if c2pa else data


def mark_encoded(data: bytes, disclosure: Disclosure, *, c2pa: C2paCredentials | None = None,
                 parent: bytes | None = None) -> bytes:
    """Add the marks to an encoded JPEG (baseline or progressive), PNG or WebP without
    re-encoding it; EXIF and XMP already there are replaced. Raises ValueError for any
    other format."""
    fmt = sniff_format(data)
    exif = exif_block(disclosure).tobytes()
    marked = insert_metadata(data, fmt, exif=exif, xmp=xmp_packet(disclosure))
    return sign_c2pa(marked, MEDIA_TYPES[fmt], disclosure, c2pa, parent) if c2pa else marked
