"""Which appliance a client certificate speaks for: the ``mid.server.NAME`` in its CN or a DNS SAN.

The instance maps a certificate to a MID user; the ECC agent name in each request is only a claim.
A certificate enrolled for another appliance would let this one act in that one's name (or fail in
confusing ways on a real instance), so ``run`` and ``doctor`` refuse it before any request.
"""

from __future__ import annotations

from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import NameOID

from hardening.errors import HardeningError
from hardening.smallfile import read_capped

AGENT_PREFIX = "mid.server."
MAX_CERT_FILE_BYTES = 64 * 1024  # a leaf and a few intermediates
MAX_CA_FILE_BYTES = 1 << 20  # a CA bundle


class IdentityError(HardeningError):
    """The client certificate does not name this appliance, or cannot be read."""


def certificate_names(cert: x509.Certificate) -> set[str]:
    """Every CN and DNS subjectAltName of ``cert``."""
    found = {str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)}
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return found
    return found | set(san.get_values_for_type(x509.DNSName))


def agent_names(names: set[str] | frozenset[str]) -> set[str]:
    """The ``mid.server.*`` names among ``names``: the appliances a certificate speaks for."""
    return {n for n in names if n.startswith(AGENT_PREFIX)}


def read_leaf(path: Path, what: str = "client certificate") -> x509.Certificate:
    """The first certificate of a PEM file, size-capped; a read failure says what to fix."""
    from hardening.perms import unreadable_hint

    try:
        data = read_capped(path, MAX_CERT_FILE_BYTES)
    except OSError as e:
        raise IdentityError(f"cannot read the {what} {path}: {unreadable_hint(path, e)}") from e
    if len(data) > MAX_CERT_FILE_BYTES:
        raise IdentityError(f"the {what} {path} is larger than {MAX_CERT_FILE_BYTES} bytes; is it a bundle?")
    try:
        return x509.load_pem_x509_certificates(data)[0]
    except (ValueError, IndexError) as e:
        raise IdentityError(
            f"the {what} {path} is not a PEM certificate; install the one the CA signed "
            "('midbox enroll --install CERT')"
        ) from e


def check_identity(cert: x509.Certificate, name: str, source: Path) -> None:
    """Refuse ``cert`` unless the one appliance it names is ``mid.server.<name>``."""
    want = AGENT_PREFIX + name
    agents = agent_names(certificate_names(cert))
    if agents == {want}:
        return
    named = ", ".join(sorted(agents)) if agents else "no mid.server name"
    raise IdentityError(
        f"the client certificate {source} is for {named}, but [appliance] name is {name!r} "
        f"({want}); point instance.client_cert at {want}'s certificate or enroll this host "
        f"('midbox enroll --name {name}')"
    )


def check_certificate_file(path: Path, name: str) -> x509.Certificate:
    """Read the client certificate at ``path`` and check it names appliance ``name``; return its leaf."""
    leaf = read_leaf(path)
    check_identity(leaf, name, path)
    return leaf
