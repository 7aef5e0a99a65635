"""A directory of small encrypted entries: one AES-256-GCM file per key, written atomically.

This was how the job journal and the result outbox were kept; they are sealed append-only logs now
(``hardening.sealedlog``), and this stays to read what an older version left (``appliance.queue.durable``)
and for the key derivation. The entry's purpose and name are bound as associated data, so a file
renamed or moved between directories fails to open.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from hardening.atomic import DirSync, atomic_write
from hardening.errors import HardeningError
from hardening.perms import mkdir_private

MAGIC = b"MBSX1"
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
_SUFFIX = ".sealed"
MAX_ENTRY_BYTES = 64_000_000
STALE_TMP_S = 60.0  # a write takes milliseconds; a temp file older than this was left by a crash


class SealedEntryError(HardeningError):
    """An entry could not be decrypted: tampered, truncated, renamed, or sealed with another key."""


def derive_key(root_key: bytes, purpose: str) -> bytes:
    """A 32-byte key for one purpose, derived from a host secret (HKDF-SHA256)."""
    return HKDF(hashes.SHA256(), 32, salt=None, info=b"midbox sealbox v1\0" + purpose.encode()).derive(
        root_key
    )


class SealedDir:
    def __init__(self, directory: Path, key: bytes, purpose: str) -> None:
        if len(key) != 32:
            raise ValueError("a SealedDir key is 32 bytes")
        self._dir = directory
        self._aead = AESGCM(key)
        self._purpose = purpose.encode()
        mkdir_private(directory)
        self._sync = DirSync(directory)
        # Temp files of writes a crash interrupted: the old entry (if any) is still whole. A young one
        # may be a write in flight of the running appliance (another process, such as a reader of the
        # journal, opens this directory too): removing it would fail that write, so it is left alone.
        cutoff = time.time() - STALE_TMP_S
        for stale in directory.glob(".*.tmp"):
            with contextlib.suppress(FileNotFoundError):
                if stale.stat().st_mtime < cutoff:
                    stale.unlink()

    def _path(self, name: str) -> Path:
        if not _NAME.fullmatch(name):
            raise ValueError(f"entry name {name[:40]!r} is not allowed")
        return self._dir / f"{name}{_SUFFIX}"

    def _ad(self, name: str) -> bytes:
        return MAGIC + b"\0" + self._purpose + b"\0" + name.encode()

    def put(self, name: str, data: bytes) -> None:
        """Encrypt and durably write ``data`` under ``name`` (replacing any previous entry)."""
        nonce = secrets.token_bytes(12)
        blob = MAGIC + nonce + self._aead.encrypt(nonce, data, self._ad(name))
        atomic_write(self._path(name), blob, dir_sync=self._sync)

    def get(self, name: str) -> bytes:
        path = self._path(name)
        blob = path.read_bytes()
        if len(blob) > MAX_ENTRY_BYTES or len(blob) < len(MAGIC) + 12 + 16 or not blob.startswith(MAGIC):
            raise SealedEntryError(f"{path} is not a sealed entry; move it aside and check the host")
        nonce, body = blob[len(MAGIC) : len(MAGIC) + 12], blob[len(MAGIC) + 12 :]
        try:
            return self._aead.decrypt(nonce, body, self._ad(name))
        except InvalidTag as e:
            raise SealedEntryError(
                f"{path} fails its integrity check (tampered, renamed or from another host); move it aside"
            ) from e

    def delete(self, name: str, *, durable: bool = True) -> None:
        """Remove ``name``; with ``durable=False`` the removal may come back after a power loss until
        ``settle()`` (or the next durable change of this directory) has run."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path(name))
        change = self._sync.changed()
        if durable:
            self._sync.sync(change)

    def settle(self) -> None:
        """Make every change made so far durable (a no-op when a later fsync already covered them)."""
        self._sync.sync()

    def names(self) -> Iterator[str]:
        """Entry names, oldest first (by modification time), ignoring temp files of interrupted writes."""
        entries = []
        for path in self._dir.iterdir():
            if path.name.endswith(_SUFFIX) and not path.name.startswith("."):
                with contextlib.suppress(FileNotFoundError):
                    entries.append((path.stat().st_mtime_ns, path.name[: -len(_SUFFIX)]))
        for _, name in sorted(entries):
            yield name

    def count(self) -> int:
        return sum(1 for p in self._dir.iterdir() if p.name.endswith(_SUFFIX) and not p.name.startswith("."))
