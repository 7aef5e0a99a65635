"""The checks a signed appliance certificate passes before ``midbox enroll --install`` puts it in place.

Untrusted bytes enter as ``UnverifiedCertificate`` (step 1, size first, then a strict parse); only
``verify_certificate`` returns a ``VerifiedCertificate``, after the numbered steps below in this order:

1. the file is small, holds certificates only (no private key), and parses
2. its public key is the key ``enroll`` made on this host
3. it names this appliance (CN or a DNS SAN equal to ``mid.server.NAME``)
4. it is valid now (not-before allows a small clock skew; not-after does not)
5. it is a leaf for TLS client auth: not a CA, clientAuth if it has an EKU, digitalSignature if it
   has a key usage, and no MD5/SHA-1 signature
6. it chains, signature by signature, to a certificate in the CA file (through intermediates that
   came with it in the same file)

Every failure is one ``CertificateRefusedError`` line naming the step and what to do.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from hardening.errors import HardeningError
from hardening.identity import MAX_CA_FILE_BYTES, MAX_CERT_FILE_BYTES

MAX_CERTS_PER_FILE = 8
MAX_CA_CERTS = 512
MAX_CHAIN_DEPTH = 4  # intermediates between the leaf and the anchor
CLOCK_SKEW = dt.timedelta(minutes=5)
AGENT_PREFIX = "mid.server."
_STEPS = 6
_WEAK_HASHES = (hashes.MD5, hashes.SHA1)


class CertificateRefusedError(HardeningError):
    """The certificate offered to ``enroll --install`` failed a check; nothing was installed."""

    def __init__(self, step: int, what: str, detail: str) -> None:
        super().__init__(
            f"certificate check {step}/{_STEPS} ({what}) failed: {detail}; nothing was installed"
        )
        self.step = step


@dataclass(frozen=True)
class UnverifiedCertificate:
    """A parsed certificate file that has passed no check but its size and syntax."""

    leaf: x509.Certificate
    intermediates: tuple[x509.Certificate, ...]


@dataclass(frozen=True)
class VerifiedCertificate:
    """A leaf that passed every step, with the intermediates that link it to the anchor."""

    leaf: x509.Certificate
    chain: tuple[x509.Certificate, ...]  # intermediates actually used, leaf-side first
    anchor: x509.Certificate
    warnings: tuple[str, ...]

    def pem(self) -> bytes:
        """Leaf then intermediates: what the TLS client sends (the anchor stays with the verifier)."""
        return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (self.leaf, *self.chain))

    @property
    def sha256(self) -> str:
        return self.leaf.fingerprint(hashes.SHA256()).hex()


def public_key_sha256(key: PublicKeyTypes) -> str:
    """SHA-256 of the SubjectPublicKeyInfo: the key's fingerprint in output and the audit log."""
    spki = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).hexdigest()


def _load_certs(data: bytes, *, source: str, max_certs: int) -> list[x509.Certificate]:
    if b"PRIVATE KEY" in data:
        raise ValueError(f"{source} holds a private key; a private key never travels, send only certificates")
    if b"-----BEGIN" in data:
        certs = x509.load_pem_x509_certificates(data)
    else:
        certs = [x509.load_der_x509_certificate(data)]
    if len(certs) > max_certs:
        raise ValueError(f"{source} holds {len(certs)} certificates, more than {max_certs}")
    return certs


def parse_certificate_file(data: bytes, source: str) -> UnverifiedCertificate:
    """Step 1: size first, then certificates only (PEM, or one DER certificate)."""
    if len(data) > MAX_CERT_FILE_BYTES:
        raise CertificateRefusedError(1, "parse", f"{source} is larger than {MAX_CERT_FILE_BYTES} bytes")
    try:
        certs = _load_certs(data, source=source, max_certs=MAX_CERTS_PER_FILE)
    except ValueError as e:
        raise CertificateRefusedError(
            1, "parse", f"{source} is not a PEM or DER certificate ({_short(e)})"
        ) from e
    return UnverifiedCertificate(certs[0], tuple(certs[1:]))


def parse_ca_file(data: bytes, source: str) -> tuple[x509.Certificate, ...]:
    """The trust anchors for step 6 (size-capped; a CA file with a key in it is refused)."""
    if len(data) > MAX_CA_FILE_BYTES:
        raise CertificateRefusedError(
            6, "chain", f"CA file {source} is larger than {MAX_CA_FILE_BYTES} bytes"
        )
    try:
        return tuple(_load_certs(data, source=source, max_certs=MAX_CA_CERTS))
    except ValueError as e:
        raise CertificateRefusedError(6, "chain", f"CA file {source} cannot be read ({_short(e)})") from e


def verify_certificate(
    unverified: UnverifiedCertificate,
    *,
    public_key: PublicKeyTypes,
    name: str,
    anchors: tuple[x509.Certificate, ...],
    now: dt.datetime,
    warn_days: int,
) -> VerifiedCertificate:
    """Steps 2-6, in order; the first failure raises ``CertificateRefusedError``."""
    leaf = unverified.leaf
    # 2. The key: a certificate for any other key is useless here, whoever signed it.
    if public_key_sha256(leaf.public_key()) != public_key_sha256(public_key):
        hint = " (it is a CA certificate, not the appliance's)" if _is_ca(leaf) else ""
        raise CertificateRefusedError(
            2,
            "key",
            f"the certificate is for another key than the one 'midbox enroll' made here{hint}; "
            "install the certificate issued for this host's CSR",
        )
    # 3. The name.
    agent = AGENT_PREFIX + name
    names = _names(leaf)
    if agent not in names:
        raise CertificateRefusedError(
            3, "name", f"the certificate names {', '.join(sorted(names)) or 'nothing'}, not {agent!r}"
        )
    # 4. Validity now.
    warnings: list[str] = []
    if leaf.not_valid_before_utc > now + CLOCK_SKEW:
        raise CertificateRefusedError(
            4,
            "validity",
            f"the certificate is not valid before {leaf.not_valid_before_utc:%Y-%m-%d %H:%M}Z "
            f"(now {now:%Y-%m-%d %H:%M}Z); check this host's clock",
        )
    if leaf.not_valid_after_utc <= now:
        raise CertificateRefusedError(
            4,
            "validity",
            f"the certificate expired on {leaf.not_valid_after_utc:%Y-%m-%d %H:%M}Z; ask for a new one",
        )
    left = leaf.not_valid_after_utc - now
    if left < dt.timedelta(days=warn_days):
        warnings.append(
            f"the certificate expires in {left.days} day(s) ({leaf.not_valid_after_utc:%Y-%m-%d}); "
            "plan 'midbox enroll --renew'"
        )
    # 5. A TLS client leaf.
    _check_leaf_profile(leaf)
    # 6. The chain, one signature at a time.
    chain, anchor = _build_chain(leaf, unverified.intermediates, anchors, now)
    return VerifiedCertificate(leaf, chain, anchor, tuple(warnings))


def _names(cert: x509.Certificate) -> set[str]:
    found = {str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)}
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return found
    return found | set(san.get_values_for_type(x509.DNSName))


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _check_leaf_profile(leaf: x509.Certificate) -> None:
    if _is_ca(leaf):
        raise CertificateRefusedError(
            5, "profile", "the certificate is a CA certificate (basicConstraints CA:TRUE); ask for a leaf"
        )
    try:
        eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        eku = None
    if eku is not None and ExtendedKeyUsageOID.CLIENT_AUTH not in eku:
        raise CertificateRefusedError(5, "profile", "the certificate's extended key usage lacks clientAuth")
    try:
        ku = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        ku = None
    if ku is not None and not ku.digital_signature:
        raise CertificateRefusedError(5, "profile", "the certificate's key usage lacks digitalSignature")
    if isinstance(leaf.signature_hash_algorithm, _WEAK_HASHES):
        raise CertificateRefusedError(
            5, "profile", "the certificate is signed with MD5 or SHA-1; ask for SHA-256"
        )


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    if cert.issuer != issuer.subject:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _usable_issuer(issuer: x509.Certificate, now: dt.datetime, role: str) -> None:
    if not _is_ca(issuer):
        raise CertificateRefusedError(6, "chain", f"the {role} {_cn(issuer)!r} is not a CA certificate")
    if not issuer.not_valid_before_utc - CLOCK_SKEW <= now < issuer.not_valid_after_utc:
        raise CertificateRefusedError(6, "chain", f"the {role} {_cn(issuer)!r} is not valid now")
    if isinstance(issuer.signature_hash_algorithm, _WEAK_HASHES) and role != "CA":
        raise CertificateRefusedError(6, "chain", f"the {role} {_cn(issuer)!r} is signed with MD5 or SHA-1")


def _build_chain(
    leaf: x509.Certificate,
    intermediates: tuple[x509.Certificate, ...],
    anchors: tuple[x509.Certificate, ...],
    now: dt.datetime,
) -> tuple[tuple[x509.Certificate, ...], x509.Certificate]:
    if not anchors:
        raise CertificateRefusedError(6, "chain", "the CA file holds no certificate")
    used: list[x509.Certificate] = []
    current = leaf
    for _ in range(MAX_CHAIN_DEPTH + 1):
        for anchor in anchors:
            if _issued_by(current, anchor):
                _usable_issuer(anchor, now, "CA")
                return tuple(used), anchor
        step = next((c for c in intermediates if c not in used and _issued_by(current, c)), None)
        if step is None:
            break
        _usable_issuer(step, now, "intermediate")
        used.append(step)
        current = step
    raise CertificateRefusedError(
        6,
        "chain",
        f"the certificate (issuer {_cn(leaf, issuer=True)!r}) is not signed by a certificate in the CA file; "
        "pass the CA that signs appliance certificates with --ca-file",
    )


def _cn(cert: x509.Certificate, *, issuer: bool = False) -> str:
    name = cert.issuer if issuer else cert.subject
    values = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(values[0].value)[:80] if values else name.rfc4514_string()[:80]


def _short(e: BaseException) -> str:
    return str(e).splitlines()[0][:160] if str(e) else type(e).__name__
