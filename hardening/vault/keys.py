"""The key hierarchy: host key (+ optional passphrase) -> key-encryption key -> data key.

The host key is 32 random bytes in ``STATE_DIR/host.key`` (0600, owner only). On Windows the file
holds a DPAPI machine-scope blob of those bytes. Under systemd the key may instead come from the
unit's credentials directory (``LoadCredentialEncrypted=midbox.host-key``), decrypted by systemd,
possibly with the TPM. The passphrase, when a store has one, goes through Argon2id first.
"""

from __future__ import annotations

import ctypes
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from hardening import atomic, perms
from hardening.vault import caps
from hardening.vault.errors import VaultError, VaultInputError, VaultLockedError, VaultMissingError
from hardening.vault.format import DATA_KEY_BYTES, KDF_HOST_KEY, KDF_HOST_KEY_AND_ARGON2ID, Header, KdfParams
from hardening.vault.secret import Secret

HOST_KEY_BYTES = 32
SYSTEMD_CREDENTIAL_NAME = "midbox.host-key"
SYSTEMD_PASSPHRASE_NAME = "midbox.store-passphrase"  # noqa: S105 - a file name, not a password
_DPAPI_PREFIX = b"MBXDPAPI1\x00"

# RFC 9106 section 4, second recommended option: 3 passes, 64 MiB, 4 lanes.
DEFAULT_ARGON2_ITERATIONS = 3
DEFAULT_ARGON2_LANES = 4
DEFAULT_ARGON2_MEMORY_KIB = 64 * 1024


@dataclass(frozen=True)
class KeySource:
    """Where the key-encryption key comes from. Built by the entry point from arguments and env."""

    host_key_path: Path
    credentials_dir: Path | None = None  # $CREDENTIALS_DIRECTORY, passed in by the CLI entry
    passphrase: Secret | None = None

    def systemd_host_key(self) -> Path | None:
        if self.credentials_dir is None:
            return None
        candidate = self.credentials_dir / SYSTEMD_CREDENTIAL_NAME
        return candidate if candidate.is_file() else None


def read_passphrase_file(path: Path) -> Secret:
    """A store passphrase from a file that is ours and 0600; one trailing line ending is not part of it.

    Raises FileNotFoundError if there is no such file, PermissionsError if others could read it.
    """
    raw = bytearray(perms.read_private_file(path, caps.MAX_PASSPHRASE_BYTES + 2))
    if raw.endswith(b"\n"):
        del raw[-1:]
        if raw.endswith(b"\r"):
            del raw[-1:]
    if not raw or len(raw) > caps.MAX_PASSPHRASE_BYTES:
        raise VaultInputError(
            f"passphrase file {path} must hold one line of 1-{caps.MAX_PASSPHRASE_BYTES} bytes"
        )
    return Secret(raw)


def systemd_passphrase(credentials_dir: Path | None) -> Secret | None:
    """The store passphrase from ``$CREDENTIALS_DIRECTORY/midbox.store-passphrase``, if the unit has one."""
    if credentials_dir is None:
        return None
    try:
        return read_passphrase_file(credentials_dir / SYSTEMD_PASSPHRASE_NAME)
    except FileNotFoundError:
        return None


def load_host_key(source: KeySource, *, create: bool = False) -> Secret:
    """Read the host key (systemd credential first, then the state file); create it only if asked."""
    from_systemd = source.systemd_host_key()
    if from_systemd is not None:
        # systemd made this file readable only by the unit's user, in a private ramfs.
        raw = perms.read_private_file(from_systemd, caps.MAX_HOST_KEY_FILE_BYTES)
        return _check_length(bytearray(raw), from_systemd)
    path = source.host_key_path
    perms.check_private_dir(path.parent)
    try:
        raw = perms.read_private_file(path, caps.MAX_HOST_KEY_FILE_BYTES)
    except FileNotFoundError:
        if not create:
            raise VaultMissingError(
                f"host key {path} is missing; without it the credential store cannot be opened. "
                "Restore it from the host backup (it is not in any release bundle)"
            ) from None
        key = bytearray(secrets.token_bytes(HOST_KEY_BYTES))
        atomic.atomic_write(path, _protect(bytes(key)), mode=0o600)
        return Secret(key)
    return _check_length(bytearray(_unprotect(raw, path)), path)


def _check_length(raw: bytearray, path: Path) -> Secret:
    if len(raw) != HOST_KEY_BYTES:
        raise VaultLockedError(
            f"host key {path} is {len(raw)} bytes, not {HOST_KEY_BYTES}; it is damaged or not ours"
        )
    return Secret(raw)


def derive_kek(host_key: Secret, passphrase: Secret | None, kdf: KdfParams, store_id: bytes) -> Secret:
    """HKDF-SHA256 over the host key and, for a passphrase store, Argon2id(passphrase)."""
    if kdf.kind == KDF_HOST_KEY_AND_ARGON2ID and passphrase is None:
        raise VaultLockedError("this credential store needs its passphrase: pass --passphrase-file FILE")
    if kdf.kind == KDF_HOST_KEY and passphrase is not None:
        raise VaultLockedError(
            "this credential store has no passphrase, but one was given; leave out --passphrase-file"
        )
    ikm = bytearray(host_key.view())
    if kdf.kind == KDF_HOST_KEY_AND_ARGON2ID:
        assert passphrase is not None
        stretched = Argon2id(
            salt=kdf.argon_salt,
            length=32,
            iterations=kdf.iterations,
            lanes=kdf.lanes,
            memory_cost=kdf.memory_kib,
        ).derive(passphrase.reveal())
        ikm += stretched
    hkdf = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=kdf.hkdf_salt, info=b"midbox vault kek v1" + store_id
    )
    kek = Secret(hkdf.derive(bytes(ikm)))
    Secret(ikm).wipe()
    return kek


def new_kdf_params(with_passphrase: bool) -> KdfParams:
    if not with_passphrase:
        return KdfParams(KDF_HOST_KEY, bytes(16), 0, 0, 0, secrets.token_bytes(32))
    return KdfParams(
        KDF_HOST_KEY_AND_ARGON2ID,
        secrets.token_bytes(16),
        DEFAULT_ARGON2_ITERATIONS,
        DEFAULT_ARGON2_LANES,
        DEFAULT_ARGON2_MEMORY_KIB,
        secrets.token_bytes(32),
    )


def key_check(kek: Secret) -> bytes:
    """A short value that tells a wrong key from a damaged wrap, for a clearer message."""
    return hmac.new(kek.reveal(), b"midbox vault key check v1", hashlib.sha256).digest()[:16]


def wrap_data_key(kek: Secret, data_key: Secret, header_ad: bytes) -> tuple[bytes, bytes]:
    nonce = secrets.token_bytes(12)
    return nonce, AESGCM(kek.reveal()).encrypt(nonce, data_key.reveal(), header_ad)


def unwrap_data_key(kek: Secret, header: Header, path: Path) -> Secret:
    """Open the data key; the header is the associated data, so any header edit fails here."""
    from hardening.vault.errors import VaultTamperedError

    if not hmac.compare_digest(key_check(kek), header.key_check):
        raise VaultLockedError(
            f"cannot unlock credential store {path}: the host key or passphrase is wrong, "
            "or the store header was tampered with; check the passphrase given (--passphrase-file or "
            "the unit's midbox.store-passphrase credential)"
        )
    try:
        plain = AESGCM(kek.reveal()).decrypt(header.wrap_nonce, header.wrapped_key, header.wrap_ad())
    except InvalidTag as e:
        raise VaultTamperedError(path, "data key wrap does not authenticate") from e
    if len(plain) != DATA_KEY_BYTES:
        raise VaultTamperedError(path, "data key has the wrong length")
    return Secret(plain)


def mac_key(data_key: Secret) -> Secret:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"midbox vault file mac v1")
    return Secret(hkdf.derive(data_key.reveal()))


# --- Windows DPAPI (machine scope), through ctypes so no extra dependency ships. -----------------


def _protect(key: bytes) -> bytes:
    if os.name != "nt":
        return key
    return _DPAPI_PREFIX + _dpapi(key, protect=True)


def _unprotect(raw: bytes, path: Path) -> bytes:
    if os.name != "nt":
        return raw
    if not raw.startswith(_DPAPI_PREFIX):
        raise VaultLockedError(
            f"host key {path} is not DPAPI-protected; it was not written by midbox on this host"
        )
    try:
        return _dpapi(raw[len(_DPAPI_PREFIX) :], protect=False)
    except VaultError as e:
        raise VaultLockedError(
            f"host key {path} cannot be decrypted by DPAPI on this machine: it was made on another "
            f"machine or is damaged ({e}); restore it from this machine's backup"
        ) from e


class _Blob(ctypes.Structure):
    _fields_ = [("cbData", ctypes.c_uint32), ("pbData", ctypes.POINTER(ctypes.c_char))]


def _dpapi(data: bytes, *, protect: bool) -> bytes:
    from hardening.winacl import system_dll

    crypt32, kernel32 = system_dll("crypt32"), system_dll("kernel32")
    buf = ctypes.create_string_buffer(data, len(data))
    blob_in = _Blob(len(data), ctypes.cast(buf, ctypes.POINTER(ctypes.c_char)))
    blob_out = _Blob()
    local_machine, ui_forbidden = 0x4, 0x1
    flags = local_machine | ui_forbidden
    if protect:
        ok = crypt32.CryptProtectData(
            ctypes.byref(blob_in), "midbox host key", None, None, None, flags, ctypes.byref(blob_out)
        )
    else:
        ok = crypt32.CryptUnprotectData(
            ctypes.byref(blob_in), None, None, None, None, ui_forbidden, ctypes.byref(blob_out)
        )
    if not ok:
        err = ctypes.get_last_error()  # type: ignore[attr-defined]
        raise VaultError(f"DPAPI {'protect' if protect else 'unprotect'} failed, Windows error {err}")
    try:
        return ctypes.string_at(blob_out.pbData, blob_out.cbData)
    finally:
        ctypes.memset(blob_out.pbData, 0, blob_out.cbData)
        kernel32.LocalFree(blob_out.pbData)
