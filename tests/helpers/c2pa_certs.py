"""A throwaway C2PA certificate chain for tests: a CA and an end-entity signer.

The C2PA certificate profile: the signer's certificate has a critical Key Usage with
digitalSignature, an Extended Key Usage of emailProtection or documentSigning (c2pa refuses
to sign without one, or with serverAuth or anyExtendedKeyUsage), CA:false, and is issued
by a CA (CA:true, keyCertSign) that verifiers list as a trust anchor.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_USAGE = dict(content_commitment=False, key_encipherment=False, data_encipherment=False,
              key_agreement=False, encipher_only=False, decipher_only=False)


@dataclass(frozen=True)
class CertChain:
    """PEM files of the chain, written to a folder."""

    ca_pem: bytes
    cert_file: Path      # signer certificate, then the CA certificate
    key_file: Path       # the signer's private key
    tls_cert_file: Path  # signer key, CA-issued, but for TLS servers (EKU serverAuth): refused
    other_key_file: Path  # a key that does not match the signer certificate


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "kontext-server tests")])


def _certificate(subject: str, key, issuer: x509.Name, issuer_key, ca: bool,
                 usage=ExtendedKeyUsageOID.EMAIL_PROTECTION):
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(issuer)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(days=1))
               .not_valid_after(now + datetime.timedelta(days=7))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None),
                              critical=True)
               .add_extension(x509.KeyUsage(digital_signature=not ca, key_cert_sign=ca,
                                            crl_sign=ca, **_USAGE), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                              critical=False))
    if not ca:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([usage]), critical=False
        ).add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
            issuer_key.public_key()), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def write_test_chain(directory: Path) -> CertChain:
    """Generate the CA, the signer, a TLS certificate and a stray key (P-256) in `directory`."""
    pem = serialization.Encoding.PEM
    ca_key, signer_key, other_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    ca = _certificate("kontext test CA", ca_key, _name("kontext test CA"), ca_key, ca=True)
    signer = _certificate("kontext test signer", signer_key, ca.subject, ca_key, ca=False)
    tls = _certificate("kontext.example", signer_key, ca.subject, ca_key, ca=False,
                       usage=ExtendedKeyUsageOID.SERVER_AUTH)
    directory.mkdir(parents=True, exist_ok=True)
    chain = CertChain(ca.public_bytes(pem), directory / "chain.pem", directory / "key.pem",
                      directory / "tls.pem", directory / "other-key.pem")
    chain.cert_file.write_bytes(signer.public_bytes(pem) + ca.public_bytes(pem))
    chain.tls_cert_file.write_bytes(tls.public_bytes(pem) + ca.public_bytes(pem))
    for path, key in ((chain.key_file, signer_key), (chain.other_key_file, other_key)):
        path.write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return chain
