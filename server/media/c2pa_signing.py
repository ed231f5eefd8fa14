"""C2PA content credentials signed with the operator's certificate (optional extra
`kontext-server[safety]`, package c2pa-python; imported only when signing is configured).

Edits record the input image as the parent ingredient (actions c2pa.opened + c2pa.edited);
text-to-image outputs, and edits whose input bytes are not at hand, get c2pa.created. Both
carry the IPTC digital source type and the model as the software agent. No thumbnail is
embedded (it would cost an extra encode per image and copy pixels into the manifest).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from server.media.metadata_insert import sniff_format

if TYPE_CHECKING:
    from server.media.provenance import Disclosure

PARENT_LABEL = "input"


class C2paSigningError(Exception):
    """The certificate or key cannot be used, or c2pa-python is not installed."""


@dataclass(frozen=True)
class C2paCredentials:
    """The operator's signing certificate chain (PEM: end-entity first, then any
    intermediates) and private key (PEM, unencrypted); `alg` as c2pa names it."""

    cert_chain_pem: bytes
    private_key_pem: bytes = field(repr=False)
    alg: str = "es256"
    tsa_url: str | None = None


def _alg_for_key(key_pem: bytes) -> str:
    """The C2PA signing algorithm that fits the private key's type and curve."""
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        key = load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise C2paSigningError(
            f"c2pa_key is not an unencrypted PEM private key ({exc})") from exc
    if isinstance(key, ec.EllipticCurvePrivateKey):
        curves = {"secp256r1": "es256", "secp384r1": "es384", "secp521r1": "es512"}
        if key.curve.name in curves:
            return curves[key.curve.name]
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "ed25519"
    if isinstance(key, rsa.RSAPrivateKey):
        return "ps256"
    raise C2paSigningError(f"c2pa_key: unsupported key type {type(key).__name__}; use EC "
                           "P-256/384/521, Ed25519 or RSA")


def load_c2pa_credentials(cert: Path, key: Path, tsa_url: str | None = None
                          ) -> C2paCredentials:
    """Read the operator's certificate chain and key, sign a tiny image with them and read
    it back, so that what c2pa refuses (a certificate without the emailProtection or
    documentSigning extended key usage, such as a TLS certificate; a key that does not match
    it; an expired one) stops the server at startup. Raises C2paSigningError saying why.

    Whether verifiers trust the certificate is their trust list's business, not checked."""
    from PIL import Image

    from server.media.provenance import Disclosure

    key_pem = key.read_bytes()
    credentials = C2paCredentials(cert.read_bytes(), key_pem, _alg_for_key(key_pem), tsa_url)
    probe = io.BytesIO()
    Image.new("RGB", (16, 16)).save(probe, "PNG")
    try:
        signed = sign_c2pa(probe.getvalue(), "image/png", Disclosure(edited=False), credentials)
    except C2paSigningError as exc:
        if not str(exc).startswith("C2PA signing failed"):
            raise
        raise C2paSigningError(f"{exc}; docs/safety.md says what certificate c2pa takes and "
                               "how to make a test chain") from exc
    failures = [code for code in _failure_codes(signed, "image/png")
                if code != "signingCredential.untrusted"]
    if failures:
        raise C2paSigningError(f"C2PA test signature with {cert} and {key} does not verify: "
                               f"{', '.join(failures)}")
    return credentials


def _failure_codes(data: bytes, mime: str) -> list[str]:
    import c2pa

    with c2pa.Reader(mime, io.BytesIO(data)) as reader:
        results = json.loads(reader.json()).get("validation_results", {})
    return [item["code"] for item in results.get("activeManifest", {}).get("failure", [])]


def c2pa_manifest(disclosure: Disclosure, mime: str, with_parent: bool) -> dict:
    """The manifest definition: claim generator, and one actions assertion."""
    action = {"digitalSourceType": disclosure.source_type,
              "softwareAgent": {"name": disclosure.model}}
    if disclosure.edited and with_parent:
        actions = [{"action": "c2pa.opened", "parameters": {"ingredientIds": [PARENT_LABEL]}},
                   {"action": "c2pa.edited", **action}]
    else:
        actions = [{"action": "c2pa.created", **action}]
    name, _, version = disclosure.software.partition(" ")
    return {
        "claim_generator_info": [{"name": name, "version": version or "unknown"}],
        "title": f"output.{mime.split('/')[1]}",
        "format": mime,
        "assertions": [{"label": "c2pa.actions", "data": {"actions": actions}}],
    }


def _context():
    import c2pa

    # verify_after_sign: the library re-reads what it just wrote (a second hash pass);
    # load_c2pa_credentials verifies a test signature once at startup instead.
    return c2pa.Context.from_dict({"builder": {"thumbnail": {"enabled": False}},
                                   "verify": {"verify_after_sign": False}})


def sign_c2pa(data: bytes, mime: str, disclosure: Disclosure,
              credentials: C2paCredentials, parent: bytes | None = None) -> bytes:
    """`data` (an encoded image of type `mime`) with a signed C2PA manifest embedded.
    `parent`: the input image of an edit, recorded as its parent ingredient."""
    try:
        import c2pa
    except ImportError as exc:
        raise C2paSigningError("C2PA signing needs c2pa-python: in the clone, pip install -e "
                               "'.[safety]'") from exc

    with_parent = disclosure.edited and parent is not None
    info = c2pa.C2paSignerInfo(alg=credentials.alg, sign_cert=credentials.cert_chain_pem,
                               private_key=credentials.private_key_pem,
                               ta_url=credentials.tsa_url)
    try:
        with c2pa.Signer.from_info(info) as signer, \
                c2pa.Builder(c2pa_manifest(disclosure, mime, with_parent), _context()) as builder:
            if with_parent:
                parent_mime = f"image/{sniff_format(parent)}"
                builder.add_ingredient({"title": f"input.{parent_mime.split('/')[1]}",
                                        "relationship": "parentOf", "label": PARENT_LABEL},
                                       parent_mime, io.BytesIO(parent))
            out = io.BytesIO()
            builder.sign(signer, mime, io.BytesIO(data), out)
    except c2pa.C2paError as exc:
        raise C2paSigningError(f"C2PA signing failed: {exc}") from exc
    return out.getvalue()
