"""A test CA that signs the CSRs ``midbox enroll`` writes, the way an admin's CA would (or would not)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

NAME = "edge-01"
AGENT = f"mid.server.{NAME}"
UNSET = object()


@dataclass(frozen=True)
class CA:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def write(self, path: Path) -> Path:
        path.write_bytes(self.pem())
        return path


def make_ca(cn: str = "test client CA", *, parent: CA | None = None) -> CA:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(parent.cert.subject if parent else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(parent.key if parent else key, hashes.SHA256())
    )
    return CA(key, cert)


def load_ca(cert: Path, key: Path) -> CA:
    k = serialization.load_pem_private_key(key.read_bytes(), password=None)
    assert isinstance(k, ec.EllipticCurvePrivateKey)
    return CA(k, x509.load_pem_x509_certificate(cert.read_bytes()))


def sign(
    csr_path: Path,
    ca: CA,
    *,
    public_key: object = UNSET,
    cn: str | None = None,
    dns: Sequence[str] | None = None,
    not_before: dt.timedelta = dt.timedelta(minutes=-5),
    not_after: dt.timedelta = dt.timedelta(days=90),
    is_ca: bool = False,
    eku: Sequence[x509.ObjectIdentifier] | None = (ExtendedKeyUsageOID.CLIENT_AUTH,),
) -> x509.Certificate:
    """Issue a certificate for the CSR at ``csr_path``; each keyword bends one thing a CA could get wrong."""
    csr = x509.load_pem_x509_csr(csr_path.read_bytes())
    assert csr.is_signature_valid
    now = dt.datetime.now(dt.UTC)
    key = csr.public_key() if public_key is UNSET else public_key
    subject = csr.subject if cn is None else x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca.cert.subject)
        .public_key(key)  # type: ignore[arg-type]
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + not_before)
        .not_valid_after(now + not_after)
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
    )
    sans = [x509.DNSName(AGENT)] if dns is None else [x509.DNSName(d) for d in dns]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    if eku is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
    return builder.sign(ca.key, hashes.SHA256())


def pem(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def password_of(state_dir: Path) -> bytes:
    """The password ``midbox enroll`` encrypts the key with: derived from ``state_dir``'s host key."""
    from appliance.credentials import load_host_key
    from hardening.keyatrest import key_password

    return key_password(load_host_key(state_dir))


def load_key(path: Path, state_dir: Path) -> ec.EllipticCurvePrivateKey:
    """The enrolled key, opened with the password derived from ``state_dir``'s host key."""
    pem = path.read_bytes()
    assert b"ENCRYPTED PRIVATE KEY" in pem, "the key must be encrypted at rest"
    key = serialization.load_pem_private_key(pem, password=password_of(state_dir))
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key
