"""The line format of ``hardening.sealedlog``: one sealed header, then one sealed line per put or delete.

    MBSL1 <file id, base64> <nonce + tag, base64>\\n        the header (line 0)
    P <name> <nonce + ciphertext + tag, base64>\\n          put: the entry's data
    D <name> <nonce + tag, base64>\\n                       delete: an empty, authenticated body

Each line is AES-256-GCM with a fresh nonce; its associated data binds the magic, the log's purpose,
the file's random id, the line's number, the operation and the name. So a line moved to another log,
another file (an older one a compaction replaced), another position, name or operation fails to
open, and so does a deleted line in the middle (the numbers after it no longer match). Only whole
lines cut off the end go unnoticed, as a deleted file of a ``SealedDir`` would.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from hardening.sealbox import _NAME, MAX_ENTRY_BYTES

MAGIC = b"MBSL1"
PUT = b"P"
DELETE = b"D"
NONCE = 12
TAG = 16
FILE_ID = 16
# The largest sealed blob a SealedDir would open, base64'd, with the op, the longest name and spaces.
MAX_DATA_BYTES = MAX_ENTRY_BYTES - len(MAGIC) - NONCE - TAG
MAX_LINE_BYTES = 2 + 128 + 1 + 4 * ((NONCE + MAX_DATA_BYTES + TAG + 2) // 3) + 1


class LineError(ValueError):
    """A line that does not parse or authenticate (the log turns it into a SealedEntryError)."""


@dataclass(frozen=True)
class Line:
    op: bytes
    name: str
    data: bytes  # the decrypted body (empty for a delete)


def _ad(purpose: bytes, file_id: bytes, seq: int, op: bytes, name: str) -> bytes:
    return b"\0".join((MAGIC, purpose, file_id, seq.to_bytes(8, "big"), op, name.encode()))


def check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise ValueError(f"entry name {name[:40]!r} is not allowed")
    return name


def header(aead: AESGCM, purpose: bytes, file_id: bytes) -> bytes:
    nonce = secrets.token_bytes(NONCE)
    tag = aead.encrypt(nonce, b"", _ad(purpose, file_id, 0, MAGIC, ""))
    return b" ".join((MAGIC, base64.b64encode(file_id), base64.b64encode(nonce + tag))) + b"\n"


def open_header(aead: AESGCM, purpose: bytes, raw: bytes) -> bytes:
    """The file id of an authentic header line (with its newline), or LineError."""
    parts = raw[:-1].split(b" ") if raw.endswith(b"\n") else []
    if len(parts) != 3 or parts[0] != MAGIC:
        raise LineError("is not a sealed log (no header)")
    file_id, sealed = _b64(parts[1]), _b64(parts[2])
    if len(file_id) != FILE_ID or len(sealed) != NONCE + TAG:
        raise LineError("has a malformed header")
    try:
        aead.decrypt(sealed[:NONCE], sealed[NONCE:], _ad(purpose, file_id, 0, MAGIC, ""))
    except InvalidTag as e:
        raise LineError("fails its integrity check (another host's key or another log's file)") from e
    return file_id


def seal(aead: AESGCM, purpose: bytes, file_id: bytes, seq: int, op: bytes, name: str, data: bytes) -> bytes:
    if len(data) > MAX_DATA_BYTES:
        raise ValueError(f"an entry of {len(data):,} bytes is over the cap of {MAX_DATA_BYTES:,}")
    nonce = secrets.token_bytes(NONCE)
    body = aead.encrypt(nonce, data, _ad(purpose, file_id, seq, op, check_name(name)))
    return b" ".join((op, name.encode(), base64.b64encode(nonce + body))) + b"\n"


def open_line(aead: AESGCM, purpose: bytes, file_id: bytes, seq: int, raw: bytes) -> Line:
    """Parse and authenticate line ``seq`` (with its newline), or LineError."""
    parts = raw[:-1].split(b" ") if raw.endswith(b"\n") and len(raw) <= MAX_LINE_BYTES else []
    if len(parts) != 3 or parts[0] not in (PUT, DELETE):
        raise LineError("is malformed")
    op = parts[0]
    try:
        name = check_name(parts[1].decode("ascii"))
    except (UnicodeDecodeError, ValueError) as e:
        raise LineError("has a malformed name") from e
    sealed = _b64(parts[2])
    if len(sealed) < NONCE + TAG or (op == DELETE and len(sealed) != NONCE + TAG):
        raise LineError("is malformed")
    try:
        data = aead.decrypt(sealed[:NONCE], sealed[NONCE:], _ad(purpose, file_id, seq, op, name))
    except InvalidTag as e:
        raise LineError("fails its integrity check (tampered, moved or from another log)") from e
    return Line(op, name, data)


def _b64(text: bytes) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as e:
        raise LineError("is not base64") from e


def read_lines(fh: BinaryIO, cap: int = MAX_LINE_BYTES) -> Iterator[tuple[int, bytes]]:
    """(offset, line) for each whole line, streaming, each at most ``cap`` bytes, up to the first that
    holds a zero byte (the zero-filled space ahead of the last line, or bytes a crash left unwritten)
    or a last line without its newline (a write a crash cut short, or one in flight), which end the
    log and are not yielded. Over-long: LineError."""
    offset = 0
    while True:
        raw = fh.readline(cap + 1)
        if not raw or b"\0" in raw:
            return
        if not raw.endswith(b"\n"):
            if len(raw) > cap:
                raise LineError(f"at byte {offset:,} is longer than the cap of {cap:,} bytes")
            return  # torn: the end of what is whole
        yield offset, raw
        offset += len(raw)
