"""The appliance's own Ed25519 key for signing audit checkpoints (STATE_DIR/audit-signing.key, 0600).

Created on first use. The private key never leaves the host; the public key is exported
(``midbox audit pubkey``) and kept off the host by whoever verifies checkpoints.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import stat
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from hardening import perms
from hardening.atomic import fsync_dir, private_on_windows
from hardening.audit.errors import SigningKeyError
from hardening.signing.keys import MAX_KEY_FILE_BYTES

KEY_FILE_NAME = "audit-signing.key"


def key_id(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:32]


def public_key_pem(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_public_key(data: bytes) -> Ed25519PublicKey:
    if len(data) > MAX_KEY_FILE_BYTES:
        raise SigningKeyError("the public key file is too large to be an Ed25519 key")
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError as e:
        raise SigningKeyError(
            "the public key file is not a PEM public key; export it with 'midbox audit pubkey'"
        ) from e
    if not isinstance(key, Ed25519PublicKey):
        raise SigningKeyError("the public key is not an Ed25519 key")
    return key


def verify_signature(public_key: Ed25519PublicKey, signature: bytes, message: bytes) -> bool:
    try:
        public_key.verify(signature, message)
    except InvalidSignature:
        return False
    return True


def check_private_windows(fd: int, path: Path) -> None:
    """Owner and DACL of the open key file, as hardening.perms checks them (icacls in the message)."""
    try:
        perms.check_private_fd(fd, path)
    except perms.PermissionsError as e:
        raise SigningKeyError(str(e)) from e


def _read_private(path: Path) -> Ed25519PrivateKey:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0))
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        if os.name == "posix" and st.st_mode & 0o077:
            raise SigningKeyError(f"{path.name} is readable by others; run 'chmod 600' on it")
        if os.name == "nt":
            check_private_windows(fh.fileno(), path)
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_KEY_FILE_BYTES:
            raise SigningKeyError(f"{path.name} is not a key file")
        data = fh.read(MAX_KEY_FILE_BYTES + 1)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as e:
        raise SigningKeyError(f"{path.name} is not a usable unencrypted PEM private key") from e
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError(f"{path.name} is not an Ed25519 key")
    return key


def load_or_create_signing_key(state_dir: Path) -> Ed25519PrivateKey:
    """Load the key, or create it if there is none; two processes racing end with the same key."""
    path = state_dir / KEY_FILE_NAME
    if path.exists():
        return _read_private(path)
    if os.name == "nt" and not os.path.lexists(state_dir):
        try:
            perms.ensure_private_dir(state_dir)
        except perms.PermissionsError as e:
            raise SigningKeyError(str(e)) from e
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    tmp = state_dir / f".{KEY_FILE_NAME}.{secrets.token_hex(8)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o600)
    try:
        if os.name == "nt":
            private_on_windows(fd, tmp)
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
            fh.flush()
            os.fsync(fh.fileno())
        # link() fails if another process created the key meanwhile: then that key wins, never a swap.
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    fsync_dir(state_dir)
    return _read_private(path)


def load_signing_key(state_dir: Path) -> Ed25519PrivateKey:
    path = state_dir / KEY_FILE_NAME
    if not path.exists():
        raise SigningKeyError(
            f"no {KEY_FILE_NAME} in the state directory; it is made when the log first signs"
        )
    return _read_private(path)
