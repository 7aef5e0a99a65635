"""The appliance's mTLS private key at rest: encrypted PKCS#8 under a key derived from the host key.

The host key is the one that protects the credential store (``STATE_DIR/host.key``, a DPAPI blob on
Windows, or systemd's encrypted credential), so a copy of ``appliance.key`` alone - a backup of
``/etc/midbox``, a misplaced file - is useless without it. The password is 32 bytes from HKDF over
the host key (hex, so OpenSSL takes it as a passphrase); the PEM is PBES2 (PBKDF2-HMAC-SHA256,
AES-256-CBC), which ``ssl.SSLContext.load_cert_chain(password=...)`` opens natively.

A key written before this (plaintext PEM) keeps working: OpenSSL does not ask for a password it does
not need. ``doctor`` warns about it and ``midbox enroll --encrypt-key`` converts it in place.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from hardening.atomic import atomic_write
from hardening.errors import HardeningError
from hardening.sealbox import derive_key

KEY_PURPOSE = "midbox-mtls-key"
ENCRYPTED_MARKER = b"-----BEGIN ENCRYPTED PRIVATE KEY-----"
PLAIN_MARKERS = (
    b"-----BEGIN PRIVATE KEY-----",
    b"-----BEGIN EC PRIVATE KEY-----",
    b"-----BEGIN RSA PRIVATE KEY-----",
)
MAX_KEY_BYTES = 16 * 1024


class KeyAtRestError(HardeningError):
    """The mTLS key cannot be opened or sealed; the message says what to do."""


def key_password(host_key: bytes) -> bytes:
    """The passphrase of the mTLS key: derived from the host key, never stored."""
    return derive_key(host_key, KEY_PURPOSE).hex().encode("ascii")


def is_encrypted(pem: bytes) -> bool:
    return ENCRYPTED_MARKER in pem


def is_plaintext(pem: bytes) -> bool:
    return any(m in pem for m in PLAIN_MARKERS)


def seal(key: PrivateKeyTypes, password: bytes | None) -> bytes:
    """The key as PEM: encrypted when there is a password (always, for keys midbox makes)."""
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    )
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)


def open_pem(pem: bytes, password: bytes | None, path: Path) -> PrivateKeyTypes:
    """The private key from PEM bytes; an encrypted one needs the host key's password."""
    if is_encrypted(pem) and password is None:
        raise KeyAtRestError(
            f"the key {path} is encrypted under this host's key, which was not found; run midbox "
            "with the state dir that holds host.key (--state-dir), as the user that owns it"
        )
    try:
        return serialization.load_pem_private_key(pem, password=password if is_encrypted(pem) else None)
    except (ValueError, TypeError) as e:
        if is_encrypted(pem):
            raise KeyAtRestError(
                f"the key {path} does not open with this host's key (another host's key, or a restored "
                "state dir without its host.key); restore host.key or enroll again"
            ) from e
        raise KeyAtRestError(f"the key {path} cannot be read as a PEM private key") from e


def encrypt_in_place(path: Path, password: bytes) -> bool:
    """Rewrite a plaintext key file encrypted, keeping its mode and group; False if already encrypted."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except OSError as e:
        from hardening.perms import unreadable_hint

        raise KeyAtRestError(f"cannot open the key {path}: {unreadable_hint(path, e)}") from e
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise KeyAtRestError(f"the key {path} is not a regular file")
        pem = fh.read(MAX_KEY_BYTES + 1)
    if len(pem) > MAX_KEY_BYTES:
        raise KeyAtRestError(
            f"the key {path} is larger than {MAX_KEY_BYTES} bytes; it is not one enroll wrote"
        )
    if is_encrypted(pem):
        return False
    key = open_pem(pem, None, path)
    atomic_write(path, seal(key, password), mode=0o600)
    if os.name == "posix":
        if st.st_gid != os.getegid():
            os.chown(path, -1, st.st_gid)
        os.chmod(path, stat.S_IMODE(st.st_mode) & 0o640)
    return True
