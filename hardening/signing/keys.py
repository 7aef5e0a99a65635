"""Admin signing keys: Ed25519, private key optionally sealed with scrypt + AES-256-GCM.

The private key file is a small JSON document so that its KDF cost is ours to choose (PKCS#8
encryption in OpenSSL defaults to a few thousand PBKDF2 rounds). The public key is standard
PEM SubjectPublicKeyInfo, readable by ``openssl pkey -pubin``.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from hardening._strictjson import Fields, b64encode, canonical, loads_strict
from hardening.signing.errors import KeyFileError

PRIVATE_FORMAT = "midbox-ed25519-private-v1"
# Every key file midbox reads (Ed25519 PEM, its encrypted JSON key, a minisign public key) is
# under 1 KiB; this is the one cap for all of them.
MAX_KEY_FILE_BYTES = 4096
KEY_ID_HEX = 32
# scrypt cost: 2**17 * 8 * 128 bytes = 128 MiB and about half a second per try.
SCRYPT_N = 2**17
SCRYPT_R = 8
SCRYPT_P = 1
_SCRYPT_MAX_N = 2**20
_AAD_PREFIX = b"midbox-key-v1\0"


def key_id(public_key: Ed25519PublicKey) -> str:
    """First 16 bytes (hex) of SHA-256 over the 32 raw public key bytes."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:KEY_ID_HEX]


def raw_public(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def generate() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def public_pem(public_key: Ed25519PublicKey) -> bytes:
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    return public_key.public_bytes(serialization.Encoding.PEM, spki)


def load_public_pem(data: bytes, what: str = "public key") -> Ed25519PublicKey:
    if len(data) > MAX_KEY_FILE_BYTES:
        raise KeyFileError(f"{what}: file too large for an Ed25519 public key")
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as e:
        raise KeyFileError(f"{what}: not a PEM public key ({e})") from e
    if not isinstance(key, Ed25519PublicKey):
        raise KeyFileError(f"{what}: not an Ed25519 key; make one with 'midbox keygen'")
    return key


@dataclass(frozen=True)
class _Sealed:
    n: int
    r: int
    p: int
    salt: bytes
    nonce: bytes


def _kek(passphrase: bytes, s: _Sealed) -> bytes:
    return Scrypt(salt=s.salt, length=32, n=s.n, r=s.r, p=s.p).derive(passphrase)


def _aad(kid: str, s: _Sealed | None) -> bytes:
    params = None if s is None else {"n": s.n, "r": s.r, "p": s.p, "salt": b64encode(s.salt)}
    return _AAD_PREFIX + canonical({"key_id": kid, "scrypt": params})


def private_key_file(key: Ed25519PrivateKey, passphrase: bytes | None, *, scrypt_n: int = SCRYPT_N) -> bytes:
    """Serialize ``key``; with a passphrase the seed is sealed, and the key id is authenticated."""
    seed = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    kid = key_id(key.public_key())
    doc: dict[str, object] = {"format": PRIVATE_FORMAT, "key_id": kid}
    if passphrase is None:
        doc.update(kdf="none", seed=b64encode(seed))
    else:
        if not passphrase:
            raise KeyFileError("passphrase is empty; give one, or use --no-passphrase")
        s = _Sealed(scrypt_n, SCRYPT_R, SCRYPT_P, os.urandom(16), os.urandom(12))
        sealed = AESGCM(_kek(passphrase, s)).encrypt(s.nonce, seed, _aad(kid, s))
        doc.update(
            kdf="scrypt",
            n=s.n,
            r=s.r,
            p=s.p,
            salt=b64encode(s.salt),
            nonce=b64encode(s.nonce),
            sealed=b64encode(sealed),
        )
    return canonical(doc) + b"\n"


def is_encrypted(data: bytes) -> bool:
    doc = loads_strict(data, MAX_KEY_FILE_BYTES, "private key", KeyFileError)
    return doc.get("kdf") != "none"


def load_private_key(data: bytes, passphrase: bytes | None) -> Ed25519PrivateKey:
    """Read a private key file; a wrong passphrase and a tampered file give the same message."""
    doc = loads_strict(data, MAX_KEY_FILE_BYTES, "private key", KeyFileError)
    f = Fields(doc, "private key", KeyFileError)
    if f.take("format", str) != PRIVATE_FORMAT:
        raise f.fail(f"not a midbox private key (format must be {PRIVATE_FORMAT!r})")
    kid = f.hex("key_id", KEY_ID_HEX)
    kdf = f.take("kdf", str)
    if kdf == "none":
        seed = f.b64("seed", 32)
    elif kdf == "scrypt":
        n, r, p = f.take("n", int), f.take("r", int), f.take("p", int)
        s = _Sealed(n, r, p, f.b64("salt", 16), f.b64("nonce", 12))
        sealed = f.b64("sealed", 48)
        if not (2**14 <= s.n <= _SCRYPT_MAX_N and s.n & (s.n - 1) == 0 and 1 <= s.r <= 32 and 1 <= s.p <= 4):
            raise f.fail("scrypt parameters out of range")
        if passphrase is None:
            raise KeyFileError("private key is encrypted; give its passphrase (--passphrase-file or a tty)")
        try:
            seed = AESGCM(_kek(passphrase, s)).decrypt(s.nonce, sealed, _aad(kid, s))
        except InvalidTag as e:
            raise KeyFileError("private key: wrong passphrase, or the key file was altered") from e
    else:
        raise f.fail(f"unknown kdf {kdf!r}")
    f.done()
    key = Ed25519PrivateKey.from_private_bytes(seed)
    if key_id(key.public_key()) != kid:
        raise KeyFileError("private key: key_id does not match the key; the file was altered")
    return key
