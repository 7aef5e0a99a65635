"""Forward-secure sealing: an HMAC key that evolves one-way after every seal, old values overwritten.

When a log is started, a random key k0 is made. k0 is written twice: as the current sealing key
(``audit/seal.key``) and as the verification key (``audit/seal-verify.key``), which the operator takes
off the host with ``midbox audit seal-export`` (that erases it here). Every seal appends an
``audit.seal`` entry whose MAC, under the current key k_e, covers the log id, the epoch e, the entry
count and the chain head; then the key becomes k_{e+1} = SHA-256(tag || k_e) and the file is
overwritten in place. Someone who takes the host later holds only the current key: they cannot
compute an earlier one, so they cannot re-seal history. They can still alter what was written since
the last seal, or cut the log short; checkpoints kept off the host cover that.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import re
from dataclasses import dataclass
from pathlib import Path

from hardening.atomic import fsync_dir, private_on_windows
from hardening.audit.errors import AuditError, SigningKeyError
from hardening.audit.signing import check_private_windows

SEAL_KEY_FILE = "seal.key"
SEAL_VERIFY_FILE = "seal-verify.key"
_EVOLVE = b"midbox.audit.seal.evolve.v1\x00"
_MAC = b"midbox.audit.seal.mac.v1\x00"
_KEY_LINE = re.compile(rb"midbox-audit-seal-1 ([0-9a-f]{32}) ([0-9]{12}) ([0-9a-f]{64})\n")
_VERIFY_LINE = re.compile(rb"midbox-audit-seal-verify-1 ([0-9a-f]{32}) ([0-9a-f]{64})\n?")
_MAX_FILE = 256


def evolve(key: bytes) -> bytes:
    return hashlib.sha256(_EVOLVE + key).digest()


def seal_mac(key: bytes, log_id: str, epoch: int, size: int, head: bytes) -> str:
    message = _MAC + f"{log_id}\n{epoch}\n{size}\n".encode("ascii") + head
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def _read_small(path: Path) -> bytes:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0))
    with os.fdopen(fd, "rb") as fh:
        if os.name == "posix" and os.fstat(fh.fileno()).st_mode & 0o077:
            raise SigningKeyError(f"{path.name} is readable by others; run 'chmod 600' on it")
        if os.name == "nt":
            check_private_windows(fh.fileno(), path)
        return fh.read(_MAX_FILE)


def _write_new(path: Path, data: bytes) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
    fd = os.open(path, flags, 0o600)
    if os.name == "nt":
        private_on_windows(fd, path)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def _overwrite(path: Path, data: bytes) -> None:
    # In place, not by rename: the old key's bytes are overwritten rather than left in a freed block.
    fd = os.open(path, os.O_WRONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0))
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


class SealKey:
    """The writer's current sealing key. Not thread-safe: the log calls it under its own lock."""

    def __init__(self, path: Path, log_id: str, epoch: int, key: bytes) -> None:
        self._path = path
        self.log_id = log_id
        self.epoch = epoch
        self._key = key

    @staticmethod
    def _line(log_id: str, epoch: int, key: bytes) -> bytes:
        return f"midbox-audit-seal-1 {log_id} {epoch:012d} {key.hex()}\n".encode("ascii")

    @classmethod
    def create(cls, directory: Path, log_id: str) -> SealKey:
        key = os.urandom(32)
        _write_new(
            directory / SEAL_VERIFY_FILE, f"midbox-audit-seal-verify-1 {log_id} {key.hex()}\n".encode()
        )
        _write_new(directory / SEAL_KEY_FILE, cls._line(log_id, 0, key))
        fsync_dir(directory)
        return cls(directory / SEAL_KEY_FILE, log_id, 0, key)

    @classmethod
    def load(cls, directory: Path, log_id: str) -> SealKey | None:
        """The key of this log, or None if there is none (sealing was off when the log began)."""
        path = directory / SEAL_KEY_FILE
        if not path.exists():
            return None
        m = _KEY_LINE.fullmatch(_read_small(path))
        if m is None:
            raise AuditError(
                f"{path.name} is damaged; sealing cannot continue (move the audit directory aside)"
            )
        if m.group(1).decode() != log_id:
            return None  # a key left over from an earlier log
        return cls(path, log_id, int(m.group(2)), bytes.fromhex(m.group(3).decode()))

    def seal_fields(self, size: int, head: bytes) -> dict[str, object]:
        return {
            "epoch": self.epoch,
            "size": size,
            "mac": seal_mac(self._key, self.log_id, self.epoch, size, head),
        }

    def advance(self) -> None:
        """Evolve the key and overwrite the old one on disk. Call only after the seal entry is durable."""
        self._key = evolve(self._key)
        self.epoch += 1
        _overwrite(self._path, self._line(self.log_id, self.epoch, self._key))


@dataclass(frozen=True)
class VerificationKey:
    """k0 of one log, kept off the host; lets a verifier recompute every epoch's key."""

    log_id: str
    key: bytes

    def key_at(self, epoch: int, cached: tuple[int, bytes] | None = None) -> bytes:
        start, key = cached if cached and cached[0] <= epoch else (0, self.key)
        for _ in range(epoch - start):
            key = evolve(key)
        return key


def parse_verification_key(data: bytes) -> VerificationKey:
    m = _VERIFY_LINE.fullmatch(data.strip() + b"\n")
    if m is None:
        raise SigningKeyError(
            "not a seal verification key; it is the line 'midbox audit seal-export' printed"
        )
    return VerificationKey(m.group(1).decode(), bytes.fromhex(m.group(2).decode()))


def export_verification_key(directory: Path) -> bytes:
    """Return the verification key and erase it from the host (overwrite, sync, unlink)."""
    path = directory / SEAL_VERIFY_FILE
    if not path.exists():
        raise SigningKeyError(
            "there is no seal verification key on this host: "
            "it was exported already, or the log is not sealed"
        )
    data = _read_small(path)
    parse_verification_key(data)
    with contextlib.suppress(OSError):
        _overwrite(path, bytes(len(data)))
    os.unlink(path)
    fsync_dir(directory)
    return data
