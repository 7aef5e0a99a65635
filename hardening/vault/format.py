"""The byte layout of ``credentials.store`` (format 1), parsed strictly after a size check.

    header   magic "MBXCRED\\0" | u16 version | 16 store id | u64 generation | u8 kdf
             | 16 argon2 salt | u32 iterations | u32 lanes | u32 memory KiB | 32 hkdf salt
             | u32 record count | 16 key check | 12 wrap nonce | 48 wrapped data key
    record   u32 length | meta | 12 nonce | u32 ct length | ciphertext+tag     (count times)
    meta     u8 alias len, alias | u8 type len, type | u16 user len, user
             | u8 option count, (u8 key len, key | u16 value len, value)*
    trailer  32 HMAC-SHA256 of everything before it, keyed from the data key
             | 32 SHA-256 of everything before it (unkeyed: tells corruption from a wrong key)

The header up to the wrap nonce is the associated data of the data-key wrap; each record's meta,
with the store id and generation, is the associated data of its ciphertext. Integers are big-endian.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

from hardening.vault import caps
from hardening.vault.errors import VaultInputError

MAGIC = b"MBXCRED\x00"
FORMAT_VERSION = 1
KDF_HOST_KEY = 0
KDF_HOST_KEY_AND_ARGON2ID = 1
NONCE_BYTES = 12
TAG_BYTES = 16
DATA_KEY_BYTES = 32
MAC_BYTES = 32
CHECKSUM_BYTES = 32

_HEADER = struct.Struct(">8sH16sQB16sIII32sI16s12s48s")
HEADER_BYTES = _HEADER.size
WRAP_AD_BYTES = HEADER_BYTES - 12 - 48

CREDENTIAL_TYPES: dict[str, tuple[int, int]] = {
    # type: (minimum, maximum) number of secrets
    "ssh-password": (1, 1),
    "ssh-key": (1, 2),  # private key, then its passphrase if it has one
    "snmp-community": (1, 1),
    "snmp-usm": (2, 2),  # auth passphrase, then priv passphrase (the probe runs authPriv only)
    "http-basic": (1, 1),
    "http-bearer": (1, 1),
}
_ALIAS = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_OPTION_KEY = re.compile(rf"[a-z][a-z0-9_-]{{0,{caps.MAX_OPTION_KEY_BYTES - 1}}}")


class FormatError(ValueError):
    """Bytes that are not a well-formed store; the caller turns this into VaultTamperedError."""


@dataclass(frozen=True)
class KdfParams:
    kind: int
    argon_salt: bytes
    iterations: int
    lanes: int
    memory_kib: int
    hkdf_salt: bytes


@dataclass(frozen=True)
class Header:
    store_id: bytes
    generation: int
    kdf: KdfParams
    count: int
    key_check: bytes
    wrap_nonce: bytes
    wrapped_key: bytes

    def wrap_ad(self) -> bytes:
        return self.pack()[:WRAP_AD_BYTES]

    def pack(self) -> bytes:
        k = self.kdf
        return _HEADER.pack(
            MAGIC,
            FORMAT_VERSION,
            self.store_id,
            self.generation,
            k.kind,
            k.argon_salt,
            k.iterations,
            k.lanes,
            k.memory_kib,
            k.hkdf_salt,
            self.count,
            self.key_check,
            self.wrap_nonce,
            self.wrapped_key,
        )


@dataclass(frozen=True)
class CredentialMeta:
    """The non-secret part of a credential: what ``creds list`` shows."""

    alias: str
    type: str
    user: str | None = None
    options: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        validate_meta(self)

    def pack(self) -> bytes:
        alias, ctype = self.alias.encode(), self.type.encode()
        user = (self.user or "").encode()
        out = bytearray(struct.pack(">B", len(alias)) + alias + struct.pack(">B", len(ctype)) + ctype)
        out += struct.pack(">H", len(user)) + user + struct.pack(">B", len(self.options))
        for key, value in self.options:
            kb, vb = key.encode(), value.encode()
            out += struct.pack(">B", len(kb)) + kb + struct.pack(">H", len(vb)) + vb
        return bytes(out)


@dataclass(frozen=True)
class SealedRecord:
    meta: CredentialMeta
    meta_bytes: bytes
    nonce: bytes
    ciphertext: bytes

    def pack(self) -> bytes:
        body = self.meta_bytes + self.nonce + struct.pack(">I", len(self.ciphertext)) + self.ciphertext
        return struct.pack(">I", len(body)) + body


def validate_alias(alias: str) -> None:
    if not _ALIAS.fullmatch(alias):
        raise VaultInputError(
            f"alias {alias[:80]!r} is not valid: use 1-{caps.MAX_ALIAS_CHARS} of A-Z a-z 0-9 . _ - "
            "starting with a letter or digit"
        )


def validate_meta(meta: CredentialMeta) -> None:
    validate_alias(meta.alias)
    if meta.type not in CREDENTIAL_TYPES:
        raise VaultInputError(
            f"unknown credential type {meta.type[:40]!r}; use one of {', '.join(CREDENTIAL_TYPES)}"
        )
    if meta.user is not None and (
        not meta.user or len(meta.user.encode()) > caps.MAX_USER_BYTES or not meta.user.isprintable()
    ):
        raise VaultInputError(f"user name must be 1-{caps.MAX_USER_BYTES} printable bytes")
    if len(meta.options) > caps.MAX_OPTIONS:
        raise VaultInputError(f"at most {caps.MAX_OPTIONS} options per credential")
    seen: set[str] = set()
    for key, value in meta.options:
        if not _OPTION_KEY.fullmatch(key) or key in seen:
            raise VaultInputError(f"option name {key[:40]!r} is not valid or repeated")
        seen.add(key)
        if len(value.encode()) > caps.MAX_OPTION_VALUE_BYTES or not value.isprintable():
            raise VaultInputError(
                f"option {key} must be at most {caps.MAX_OPTION_VALUE_BYTES} printable bytes"
            )


class _Reader:
    def __init__(self, data: bytes | bytearray | memoryview, what: str) -> None:
        self._view = memoryview(data)
        self._pos = 0
        self._what = what

    def take(self, n: int) -> memoryview:
        if n < 0 or self._pos + n > len(self._view):
            raise FormatError(f"{self._what} is truncated")
        out = self._view[self._pos : self._pos + n]
        self._pos += n
        return out

    def u8(self) -> int:
        return int(self.take(1)[0])

    def u16(self) -> int:
        return int(struct.unpack(">H", self.take(2))[0])

    def u32(self) -> int:
        return int(struct.unpack(">I", self.take(4))[0])

    def text(self, n: int) -> str:
        try:
            return bytes(self.take(n)).decode("utf-8", "strict")
        except UnicodeDecodeError as e:
            raise FormatError(f"{self._what} has a field that is not UTF-8") from e

    def end(self) -> None:
        if self._pos != len(self._view):
            raise FormatError(f"{self._what} has {len(self._view) - self._pos} unexpected trailing bytes")

    @property
    def remaining(self) -> int:
        return len(self._view) - self._pos


def parse_header(data: bytes) -> Header:
    if len(data) < HEADER_BYTES + MAC_BYTES:
        raise FormatError("file is shorter than a header")
    (
        magic,
        version,
        store_id,
        generation,
        kind,
        argon_salt,
        iterations,
        lanes,
        memory,
        hkdf_salt,
        count,
        key_check,
        wrap_nonce,
        wrapped,
    ) = _HEADER.unpack_from(data, 0)
    # 1. What the file says it is.
    if magic != MAGIC:
        raise FormatError("bad magic: not a midbox credential store")
    if version != FORMAT_VERSION:
        raise FormatError(
            f"format version {version} is not supported by this midbox (expects {FORMAT_VERSION})"
        )
    # 2. KDF parameters inside the bounds this build accepts, so a header cannot ask for gigabytes.
    if kind == KDF_HOST_KEY:
        if (argon_salt, iterations, lanes, memory) != (bytes(16), 0, 0, 0):
            raise FormatError("argon2 parameters set on a store without a passphrase")
    elif kind == KDF_HOST_KEY_AND_ARGON2ID:
        if not (
            caps.ARGON2_MIN_ITERATIONS <= iterations <= caps.ARGON2_MAX_ITERATIONS
            and 1 <= lanes <= caps.ARGON2_MAX_LANES
            and max(caps.ARGON2_MIN_MEMORY_KIB, 8 * lanes) <= memory <= caps.ARGON2_MAX_MEMORY_KIB
        ):
            raise FormatError("argon2 parameters out of bounds")
    else:
        raise FormatError(f"unknown kdf {kind}")
    if count > caps.MAX_RECORDS:
        raise FormatError(f"record count {count} over the cap of {caps.MAX_RECORDS}")
    kdf = KdfParams(kind, argon_salt, iterations, lanes, memory, hkdf_salt)
    return Header(store_id, generation, kdf, count, key_check, wrap_nonce, wrapped)


def parse_meta(r: _Reader) -> tuple[CredentialMeta, int]:
    start = r.remaining
    alias = r.text(r.u8())
    ctype = r.text(r.u8())
    user = r.text(r.u16()) or None
    options = tuple((r.text(r.u8()), r.text(r.u16())) for _ in range(r.u8()))
    try:
        meta = CredentialMeta(alias, ctype, user, options)
    except VaultInputError as e:
        raise FormatError(f"record metadata is invalid: {e}") from e
    return meta, start - r.remaining


def parse_records(body: memoryview, count: int) -> list[SealedRecord]:
    """Parse ``count`` records from the bytes between the header and the trailer, nothing else."""
    r = _Reader(body, "record list")
    records: list[SealedRecord] = []
    aliases: set[str] = set()
    for _ in range(count):
        rr = _Reader(r.take(r.u32()), "record")
        meta_start = rr.remaining
        meta, meta_len = parse_meta(rr)
        nonce = bytes(rr.take(NONCE_BYTES))
        ct_len = rr.u32()
        if (
            not TAG_BYTES
            < ct_len
            <= 1 + caps.MAX_SECRETS_PER_RECORD * (4 + caps.MAX_SECRET_BYTES) + TAG_BYTES
        ):
            raise FormatError("record ciphertext length out of bounds")
        ciphertext = bytes(rr.take(ct_len))
        rr.end()
        meta_bytes = meta.pack()
        if len(meta_bytes) != meta_len or meta_start < meta_len:
            raise FormatError("record metadata is not in canonical form")
        if meta.alias in aliases:
            raise FormatError(f"alias {meta.alias!r} appears twice")
        aliases.add(meta.alias)
        records.append(SealedRecord(meta, meta_bytes, nonce, ciphertext))
    r.end()
    return records


def record_ad(store_id: bytes, generation: int, meta_bytes: bytes) -> bytes:
    """What a record's ciphertext is bound to: this store, this generation, this alias/type/fields."""
    return b"midbox-credential-v1\x00" + store_id + struct.pack(">Q", generation) + meta_bytes


def pack_secrets(secrets: list[bytearray]) -> bytearray:
    out = bytearray(struct.pack(">B", len(secrets)))
    for s in secrets:
        out += struct.pack(">I", len(s))
        out += s
    return out


def unpack_secrets(plain: bytearray | memoryview, what: str) -> list[bytearray]:
    r = _Reader(plain, what)
    n = r.u8()
    if not 1 <= n <= caps.MAX_SECRETS_PER_RECORD:
        raise FormatError(f"{what} holds {n} secrets")
    out: list[bytearray] = []
    for _ in range(n):
        size = r.u32()
        if size > caps.MAX_SECRET_BYTES:
            raise FormatError(f"{what} has a secret over the size cap")
        out.append(bytearray(r.take(size)))
    r.end()
    return out
