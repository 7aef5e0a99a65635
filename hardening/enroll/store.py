"""The appliance's mTLS identity on disk: the key made here, its CSR, and the signed certificate.

Layout, beside each other in one directory (by default the config's, so the config's default
``client_key = "appliance.key"`` and ``client_cert = "appliance.crt"`` need no editing):

- ``appliance.key``       the private key (ECDSA P-256, PKCS#8 PEM encrypted under the host key, see
                          ``hardening.keyatrest``); 0600, or 0640 with the directory's
                          group when that group may read the directory (``/etc/midbox`` is root:midbox 0750,
                          and the service runs as ``midbox``)
- ``appliance.csr``       the request that was sent to the CA (public; keeps the enrolled name)
- ``appliance.crt``       the installed certificate, leaf then intermediates (0644)
- ``appliance.next.key`` / ``appliance.next.csr``  a renewal in progress; the current pair stays in force
- ``appliance.next.crt``  written only during a renewal's swap: the verified certificate, which marks the
                          swap as decided so an interrupted one is finished by ``finish_interrupted_swap``

The private key never leaves this module except as an object used for signing the CSR.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from hardening import keyatrest
from hardening.atomic import atomic_write, fsync_dir
from hardening.enroll.verify import AGENT_PREFIX, VerifiedCertificate, public_key_sha256
from hardening.errors import HardeningError
from hardening.identity import MAX_CERT_FILE_BYTES
from hardening.perms import PermissionsError

# The same rule as the config's ``appliance.name`` (appliance/config/parse.py); a test keeps them equal.
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
MAX_KEY_BYTES = 16 * 1024
MAX_CSR_BYTES = 16 * 1024


class EnrollError(HardeningError):
    """An enrollment step cannot go ahead; the message says what to do."""


@dataclass(frozen=True)
class EnrollPaths:
    key: Path
    cert: Path
    # The host key's password for the key at rest (hardening.keyatrest); None reads plaintext keys only
    # and writes plaintext (tests of the file layout). ``midbox enroll`` always passes one.
    key_password: bytes | None = field(default=None, repr=False)

    @classmethod
    def in_dir(cls, directory: Path, key_password: bytes | None = None) -> EnrollPaths:
        return cls(directory / "appliance.key", directory / "appliance.crt", key_password)

    def __post_init__(self) -> None:
        if self.key == self.cert or self.key.parent != self.cert.parent:
            raise EnrollError(
                "enroll needs client_key and client_cert as two files in one directory; fix the config"
            )

    @property
    def directory(self) -> Path:
        return self.key.parent

    @property
    def csr(self) -> Path:
        return self.key.with_suffix(".csr")

    @property
    def next_key(self) -> Path:
        return self.key.with_name(f"{self.key.stem}.next{self.key.suffix}")

    @property
    def next_csr(self) -> Path:
        return self.next_key.with_suffix(".csr")

    @property
    def staged_cert(self) -> Path:
        return self.cert.with_name(f"{self.cert.stem}.next{self.cert.suffix}")


@dataclass(frozen=True)
class KeyCreated:
    key: Path
    csr: Path
    key_mode: int
    key_group: int | None  # the gid the key was given for the service to read it, if any
    key_sha256: str  # of the public key (SubjectPublicKeyInfo)
    csr_sha256: str  # of the CSR's DER bytes
    csr_pem: bytes
    agent: str


@dataclass(frozen=True)
class PendingRequest:
    """The key and CSR an installed certificate must match: a renewal's if one is pending."""

    key_path: Path
    csr_path: Path
    public_key: PublicKeyTypes
    name: str
    renewal: bool


def validate_name(name: str) -> str:
    if not NAME_RE.fullmatch(name):
        raise EnrollError(
            f"appliance name {name[:70]!r} may hold letters, digits, '.', '_' and '-' (1-64), "
            "as in the config"
        )
    return name


def create_key_and_csr(paths: EnrollPaths, name: str, *, renew: bool, force: bool) -> KeyCreated:
    """Make a P-256 key here and a CSR for ``mid.server.NAME``; never overwrite a key unless ``force``."""
    validate_name(name)
    if renew:
        for p in (paths.key, paths.cert):
            if not p.exists():
                raise EnrollError(
                    f"nothing to renew: {p} is missing; enroll first with 'midbox enroll --name NAME'"
                )
        key_path, csr_path = paths.next_key, paths.next_csr
        if key_path.exists() and not force:
            raise EnrollError(
                f"a renewal is already pending ({key_path}); install its certificate with "
                "'midbox enroll --install CERT', or pass --force to start it over"
            )
    else:
        key_path, csr_path = paths.key, paths.csr
        if key_path.exists() and not force:
            raise EnrollError(
                f"{key_path} exists; keys are never overwritten: use 'midbox enroll --renew' for a new one "
                "beside it, or --force to replace it (the installed certificate then stops working)"
            )
        # Starting over: a pending renewal belongs to the key being replaced.
        for stale in (paths.next_key, paths.next_csr):
            stale.unlink(missing_ok=True)
    mode, gid = prepare_key_dir(paths.directory)
    key = ec.generate_private_key(ec.SECP256R1())
    csr = build_csr(key, name)
    write_key(key_path, keyatrest.seal(key, paths.key_password), mode, gid)
    csr_pem = csr.public_bytes(serialization.Encoding.PEM)
    atomic_write(csr_path, csr_pem, mode=0o644)
    return KeyCreated(
        key=key_path,
        csr=csr_path,
        key_mode=mode,
        key_group=gid,
        key_sha256=public_key_sha256(key.public_key()),
        csr_sha256=hashlib.sha256(csr.public_bytes(serialization.Encoding.DER)).hexdigest(),
        csr_pem=csr_pem,
        agent=AGENT_PREFIX + name,
    )


def build_csr(key: ec.EllipticCurvePrivateKey, name: str) -> x509.CertificateSigningRequest:
    """CN and a DNS SAN of ``mid.server.NAME``; asks for a TLS client leaf (CAs may copy these)."""
    agent = AGENT_PREFIX + validate_name(name)
    return (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, agent)]))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(agent)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )


def prepare_key_dir(directory: Path) -> tuple[int, int | None]:
    """Create the directory 0700 if missing, refuse one others could write, and pick the key's mode.

    A key is 0600, unless the directory lets a group other than ours in (the service's group, as with
    ``/etc/midbox`` root:midbox 0750): then the key is 0640 in that group, exactly the readers the
    directory already admits. A directory others may write, or owned by someone else, is refused.
    """
    if not os.path.lexists(directory):
        directory.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            os.mkdir(directory, 0o700)
    st = os.lstat(directory)
    if not stat.S_ISDIR(st.st_mode):
        raise PermissionsError(f"{directory} must be a directory (not a link or file)")
    if os.name != "posix":
        return 0o600, None
    if st.st_uid != os.geteuid():
        raise PermissionsError(
            f"{directory} is owned by uid {st.st_uid}, not by the user running enroll; "
            "run enroll as its owner"
        )
    if stat.S_IMODE(st.st_mode) & 0o022:
        raise PermissionsError(
            f"{directory} is writable by group/others (mode {stat.S_IMODE(st.st_mode):04o}); "
            f"run: chmod go-w {directory}"
        )
    if stat.S_IMODE(st.st_mode) & 0o050 == 0o050 and st.st_gid != os.getegid():
        return 0o640, st.st_gid
    return 0o600, None


def write_key(path: Path, pem: bytes, mode: int, gid: int | None) -> None:
    """Atomic, created 0600; the group is set before the group-read bit, so no wider moment exists."""
    atomic_write(path, pem, mode=0o600)
    if os.name == "posix":
        if gid is not None:
            os.chown(path, -1, gid)
        os.chmod(path, mode)


def _read_small(path: Path, cap: int, what: str) -> bytes:
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except OSError as e:
        raise EnrollError(f"cannot open the {what} {path}: {e.strerror}") from e
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise EnrollError(f"the {what} {path} is not a regular file")
        if os.name == "posix" and what == "key" and stat.S_IMODE(st.st_mode) & 0o037:
            raise PermissionsError(
                f"the key {path} is writable by its group or open to others "
                f"(mode {stat.S_IMODE(st.st_mode):04o}); run: chmod 600 {path}"
            )
        data = fh.read(cap + 1)
    if len(data) > cap:
        raise EnrollError(f"the {what} {path} is larger than {cap} bytes; it is not one enroll wrote")
    return data


def _load_public_key(path: Path, password: bytes | None) -> PublicKeyTypes:
    data = _read_small(path, MAX_KEY_BYTES, "key")
    try:
        key = keyatrest.open_pem(data, password, path)
    except keyatrest.KeyAtRestError as e:
        raise EnrollError(str(e)) from e
    return key.public_key()


def load_pending(paths: EnrollPaths) -> PendingRequest:
    """The renewal's key and CSR if one is pending, else the current ones; the CSR must be for the key."""
    renewal = paths.next_key.exists()
    key_path, csr_path = (paths.next_key, paths.next_csr) if renewal else (paths.key, paths.csr)
    public, name = _request(key_path, csr_path, paths.key_password)
    return PendingRequest(key_path, csr_path, public, name, renewal)


def enrolled_name(paths: EnrollPaths) -> str:
    """The name of the current enrollment: from its CSR, else from the installed certificate.

    Either must be for the current key. The certificate is the fallback for a pair put in place
    by hand (no CSR kept); it must name a ``mid.server.NAME`` in its CN or a DNS SAN.
    """
    if paths.csr.exists() or not paths.cert.exists():
        return _request(paths.key, paths.csr, paths.key_password)[1]
    public = _load_public_key(paths.key, paths.key_password)
    try:
        cert = x509.load_pem_x509_certificates(_read_small(paths.cert, MAX_CERT_FILE_BYTES, "certificate"))[0]
    except ValueError as e:
        raise EnrollError(f"the certificate {paths.cert} cannot be read; enroll again with --name") from e
    if public_key_sha256(cert.public_key()) != public_key_sha256(public):
        raise EnrollError(
            f"the certificate {paths.cert} is not for the key {paths.key}; enroll again with --name"
        )
    names = {str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)}
    with contextlib.suppress(x509.ExtensionNotFound):
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names |= set(san.get_values_for_type(x509.DNSName))
    agents = sorted(n[len(AGENT_PREFIX) :] for n in names if n.startswith(AGENT_PREFIX))
    if len(agents) != 1:
        raise EnrollError(
            f"the certificate {paths.cert} does not name one mid.server.NAME; enroll again with --name"
        )
    return validate_name(agents[0])


def _request(key_path: Path, csr_path: Path, password: bytes | None) -> tuple[PublicKeyTypes, str]:
    if not key_path.exists():
        raise EnrollError(f"no key at {key_path}; run 'midbox enroll --name NAME' first")
    public = _load_public_key(key_path, password)
    try:
        csr = x509.load_pem_x509_csr(_read_small(csr_path, MAX_CSR_BYTES, "CSR"))
    except ValueError as e:
        raise EnrollError(f"the CSR {csr_path} cannot be read; make a new pair with --force") from e
    if not csr.is_signature_valid or public_key_sha256(csr.public_key()) != public_key_sha256(public):
        raise EnrollError(f"the CSR {csr_path} is not for the key {key_path}; make a new pair with --force")
    cns = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    cn = str(cns[0].value) if cns else ""
    if not cn.startswith(AGENT_PREFIX):
        raise EnrollError(f"the CSR {csr_path} does not name a mid.server; make a new pair with --force")
    return public, validate_name(cn[len(AGENT_PREFIX) :])


def install(paths: EnrollPaths, pending: PendingRequest, verified: VerifiedCertificate) -> None:
    """Put a verified certificate where the appliance reads it; a renewal swaps key and certificate.

    First enrollment (or a re-issue for the same key): one atomic write of the certificate file.
    Renewal: the verified certificate is staged first (the decision), then the key and the
    certificate are each renamed into place. A crash between the renames is finished by
    ``finish_interrupted_swap``, which every enroll run calls first.
    """
    if public_key_sha256(verified.leaf.public_key()) != public_key_sha256(pending.public_key):
        raise EnrollError("internal: the verified certificate is not for the pending key")
    if not pending.renewal:
        atomic_write(paths.cert, verified.pem(), mode=0o644)
        return
    atomic_write(paths.staged_cert, verified.pem(), mode=0o644)
    finish_interrupted_swap(paths)


def finish_interrupted_swap(paths: EnrollPaths) -> str | None:
    """Complete a renewal whose certificate was staged; returns what was done, or None if nothing was pending.

    Safe to run any number of times, and at appliance start: each rename happens only when the
    staged certificate's public key matches the key being moved into place.
    """
    if not paths.staged_cert.exists():
        return None
    try:
        pem = _read_small(paths.staged_cert, MAX_CERT_FILE_BYTES, "certificate")
        staged = x509.load_pem_x509_certificates(pem)[0]
    except ValueError:
        paths.staged_cert.unlink()
        fsync_dir(paths.directory)
        return f"removed an unreadable staged certificate {paths.staged_cert.name}"
    want = public_key_sha256(staged.public_key())
    if (
        paths.next_key.exists()
        and public_key_sha256(_load_public_key(paths.next_key, paths.key_password)) == want
    ):
        os.replace(paths.next_key, paths.key)
        fsync_dir(paths.directory)
    if not paths.key.exists() or public_key_sha256(_load_public_key(paths.key, paths.key_password)) != want:
        paths.staged_cert.unlink()
        fsync_dir(paths.directory)
        return f"removed a staged certificate {paths.staged_cert.name} that matched no key"
    os.replace(paths.staged_cert, paths.cert)
    if paths.next_csr.exists():
        os.replace(paths.next_csr, paths.csr)
    fsync_dir(paths.directory)
    return f"renewed key and certificate are in place ({paths.key.name}, {paths.cert.name})"
