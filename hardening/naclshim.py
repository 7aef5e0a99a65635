"""The part of PyNaCl that paramiko uses (Ed25519 keys), served by cryptography, for the frozen binary.

paramiko imports ``nacl.signing`` for ssh-ed25519 host keys and client keys and nothing else from PyNaCl.
Shipping PyNaCl costs its own libsodium (about 0.3 MB of the binary) for one signature scheme
that cryptography's OpenSSL already has. The binary's runtime hook (build/rthooks/nacl_from_cryptography.py)
serves ``nacl``, ``nacl.signing`` and ``nacl.exceptions`` from this module; the source tree and the
tests keep the real PyNaCl, against which tests/hardening/test_naclshim.py checks this one.

Behaviour kept from PyNaCl (libsodium's ``crypto_sign_verify_detached``): wrong key, seed or signature
lengths are ValueError; a public key or signature R that is a point of small order, or a public key
that is not canonically encoded, never verifies; Ed25519 signatures are deterministic, so signing gives
the same bytes as libsodium.
"""

from __future__ import annotations

import hmac

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

KEY_BYTES = 32
SIGNATURE_BYTES = 64
_P = 2**255 - 19  # the field prime; a canonical encoding of y is below it
# libsodium's ge25519_has_small_order: the encodings (top bit ignored) of the points of order 1, 2, 4
# and 8, including the non-canonical ones. A signature under such a key proves nothing about a signer.
_SMALL_ORDER = tuple(
    bytes.fromhex(h)
    for h in (
        "0000000000000000000000000000000000000000000000000000000000000000",
        "0100000000000000000000000000000000000000000000000000000000000000",
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    )
)


class CryptoError(Exception):
    """Base of the errors, as ``nacl.exceptions.CryptoError``."""


class BadSignatureError(CryptoError):
    """The signature does not verify (``nacl.exceptions.BadSignatureError``)."""


class NaclValueError(ValueError, CryptoError):
    """A wrong length (``nacl.exceptions.ValueError``)."""


def _bytes_of_length(value: object, length: int, what: str) -> bytes:
    if not isinstance(value, bytes):
        raise TypeError(f"{what} must be bytes")
    if len(value) != length:
        raise NaclValueError(f"The {what} must be exactly {length} bytes long")
    return value


def _small_order(encoded: bytes) -> bool:
    masked = encoded[:31] + bytes([encoded[31] & 0x7F])
    return masked in _SMALL_ORDER


def _canonical(encoded: bytes) -> bool:
    return int.from_bytes(encoded, "little") & ((1 << 255) - 1) < _P


class SignedMessage(bytes):
    """``signature + message``, with both as attributes (``nacl.signing.SignedMessage``)."""

    _signature: bytes
    _message: bytes

    @classmethod
    def _from_parts(cls, signature: bytes, message: bytes) -> SignedMessage:
        signed = cls(signature + message)
        signed._signature = signature
        signed._message = message
        return signed

    @property
    def signature(self) -> bytes:
        return self._signature

    @property
    def message(self) -> bytes:
        return self._message


class VerifyKey:
    """An Ed25519 public key (``nacl.signing.VerifyKey``, raw encoding only)."""

    def __init__(self, key: bytes) -> None:
        self._key = _bytes_of_length(key, KEY_BYTES, "key")
        self._public = Ed25519PublicKey.from_public_bytes(self._key)

    def encode(self) -> bytes:
        return self._key

    def __bytes__(self) -> bytes:
        return self._key

    def __eq__(self, other: object) -> bool:
        return isinstance(other, VerifyKey) and hmac.compare_digest(self._key, other._key)

    def __hash__(self) -> int:
        return hash(self._key)

    def verify(self, smessage: bytes, signature: bytes | None = None) -> bytes:
        """The message if ``signature`` (else the first 64 bytes of ``smessage``) verifies.

        Raises BadSignatureError otherwise, ValueError for a signature that is not 64 bytes long.
        """
        if signature is None:
            signature, smessage = smessage[:SIGNATURE_BYTES], smessage[SIGNATURE_BYTES:]
        _bytes_of_length(signature, SIGNATURE_BYTES, "signature")
        if _small_order(self._key) or not _canonical(self._key) or _small_order(signature[:32]):
            raise BadSignatureError("Signature was forged or corrupt")
        try:
            self._public.verify(signature, smessage)
        except InvalidSignature:
            raise BadSignatureError("Signature was forged or corrupt") from None
        return smessage


class SigningKey:
    """An Ed25519 private key from its 32-byte seed (``nacl.signing.SigningKey``, raw encoding only)."""

    def __init__(self, seed: bytes) -> None:
        self._seed = _bytes_of_length(seed, KEY_BYTES, "seed")
        self._private = Ed25519PrivateKey.from_private_bytes(self._seed)
        public = self._private.public_key()
        self.verify_key = VerifyKey(
            public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        )

    def encode(self) -> bytes:
        return self._seed

    def __bytes__(self) -> bytes:
        return self._seed

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SigningKey) and hmac.compare_digest(self._seed, other._seed)

    def __hash__(self) -> int:
        return hash(self._seed)

    def sign(self, message: bytes) -> SignedMessage:
        return SignedMessage._from_parts(self._private.sign(message), message)
