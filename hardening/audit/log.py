"""The append-only audit log writer.

Every ``record()`` appends one complete line with a single ``write()`` to an O_APPEND file, so the
entry is in the kernel before ``record()`` returns and survives a crash of the process. ``fsync`` is
batched (group commit): at most every ``fsync_interval_s``, or inline once ``fsync_max_pending``
entries wait, and always in ``flush()`` and ``close()``. Rotation starts a new file whose first entry
chains to the last entry of the previous one, so the chain is continuous across files.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import secrets
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hardening.atomic import fsync_dir
from hardening.audit import _entry, _files
from hardening.audit.checkpoint import Checkpoint, sign_checkpoint
from hardening.audit.errors import (
    AuditError,
    AuditLogBusyError,
    AuditLogDamagedError,
    AuditValueError,
    AuditWriteError,
)
from hardening.audit.events import check_event
from hardening.audit.seal import SealKey
from hardening.perms import mkdir_private
from hardening.utctime import format_time

log = logging.getLogger(__name__)

_OPEN_FLAGS = os.O_RDWR | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)


@dataclass(frozen=True)
class AuditOptions:
    """Caps and batching of one audit log (the appliance may build these from its limits)."""

    rotate_bytes: int = 64 * 1024 * 1024
    fsync_interval_s: float = 0.05
    fsync_max_pending: int = 512
    max_entry_bytes: int = 65_536
    max_string_chars: int = 4_096
    seal: bool = True  # forward-secure sealing of new logs (see hardening.audit.seal)
    seal_every_entries: int = 10_000
    seal_interval_s: float = 60.0

    def __post_init__(self) -> None:
        if not 4_096 <= self.max_entry_bytes <= 1_048_576:
            raise ValueError("max_entry_bytes must be 4096..1048576")
        if self.rotate_bytes < 2 * self.max_entry_bytes:
            raise ValueError("rotate_bytes must hold at least two entries")
        if not 0.0 <= self.fsync_interval_s <= 5.0 or self.fsync_max_pending < 1:
            raise ValueError("fsync_interval_s must be 0..5 and fsync_max_pending at least 1")
        if self.seal_every_entries < 1 or not 0.0 < self.seal_interval_s <= 86_400:
            raise ValueError("seal_every_entries must be at least 1 and seal_interval_s 0..86400")


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _lock_file(directory: Path) -> int:
    fd = os.open(directory / ".lock", os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        if sys.platform == "win32":
            import msvcrt

            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        else:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        os.close(fd)
        raise AuditLogBusyError("another midbox process is writing this audit log; stop it first") from e
    return fd


class AuditLog:
    """Satisfies ``appliance.interfaces.AuditSink``; safe to call from any thread."""

    def __init__(
        self,
        directory: Path,
        options: AuditOptions | None = None,
        clock: Callable[[], dt.datetime] = _utcnow,
    ) -> None:
        self._dir = directory
        self._opt = options or AuditOptions()
        self._clock = clock
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._pending = 0
        self._sealer: SealKey | None = None
        self._unsealed = 0
        self._last_seal = time.monotonic()
        self._closed = False
        self._broken = False
        mkdir_private(directory)
        self._lock_fd = _lock_file(directory)
        try:
            with self._lock:
                self._open_existing_or_new()
        except BaseException:
            os.close(self._lock_fd)
            raise
        self._syncer = threading.Thread(target=self._sync_loop, name="audit-fsync", daemon=True)
        self._syncer.start()

    # -- opening ---------------------------------------------------------------------------------

    def _open_existing_or_new(self) -> None:
        files = _files.log_files(self._dir)
        if not files:
            self._start_new_log()
            return
        first = _files.read_first_line(files[0][1], self._opt.max_entry_bytes)
        if first is None:
            if len(files) == 1 and files[0][1].stat().st_size == 0:
                self._start_new_log(files[0][0])
                return
            raise AuditLogDamagedError(
                f"{files[0][1].name} does not begin with an entry; run 'midbox audit verify'"
            )
        genesis = self._parse_or_damaged(first, files[0][1])
        if (
            genesis.seq != 0
            or genesis.event != "audit.genesis"
            or not isinstance(genesis.fields.get("log_id"), str)
        ):
            raise AuditLogDamagedError(f"{files[0][1].name} does not begin with the log's genesis entry")
        self.log_id: str = str(genesis.fields["log_id"])
        # The newest file may be empty if a crash came between rotation and the first write to it.
        self._number, path = files[-1]
        self._fd = os.open(path, _OPEN_FLAGS, 0o600)
        last, torn = self._tail_of(self._fd, path)
        if last is None and len(files) > 1:
            prev_fd = os.open(files[-2][1], os.O_RDWR | getattr(os, "O_BINARY", 0))
            try:
                last, torn_prev = self._tail_of(prev_fd, files[-2][1])
                torn = torn_prev + torn
            finally:
                os.close(prev_fd)
        if last is None:
            raise AuditLogDamagedError(f"{path.name} holds no complete entry; run 'midbox audit verify'")
        entry = self._parse_or_damaged(last, path)
        self._seq = entry.seq + 1
        self._head = entry.hash
        self._size = os.fstat(self._fd).st_size
        self._sealer = SealKey.load(self._dir, self.log_id) if self._opt.seal else None
        if self._opt.seal and self._sealer is None:
            log.warning("audit log %s has no sealing key; new entries will not be sealed", self.log_id)
        if (
            self._sealer is not None
            and entry.event == "audit.seal"
            and entry.fields.get("epoch") == self._sealer.epoch
        ):
            self._sealer.advance()  # a crash came between the seal entry and the key's evolution
        if torn:
            self._write_entry("audit.recovered", {"dropped_bytes": len(torn), "dropped_sha256": _sha(torn)})
            self._sync_now()

    def _tail_of(self, fd: int, path: Path) -> tuple[bytes | None, bytes]:
        last, end = _files.read_tail(fd, self._opt.max_entry_bytes)
        if end < 0:
            raise AuditLogDamagedError(
                f"the last line of {path.name} is longer than any entry; run 'midbox audit verify'"
            )
        size = os.fstat(fd).st_size
        torn = b""
        if end < size:
            # A crash in the middle of an append: cut the partial line off and say so in the log.
            torn = _files.pread(fd, size - end, end)
            log.warning(
                "audit log %s ended in a partial entry of %d bytes; removing it", path.name, len(torn)
            )
            os.ftruncate(fd, end)
            os.fsync(fd)
        return last, torn

    def _parse_or_damaged(self, raw: bytes, path: Path) -> _entry.Entry:
        try:
            return _entry.parse_entry(raw)
        except _entry.EntryFormatError as e:
            raise AuditLogDamagedError(
                f"an entry of {path.name} is not readable ({e}); run 'midbox audit verify'"
            ) from e

    def _start_new_log(self, number: int = 1) -> None:
        self.log_id = secrets.token_hex(16)
        self._number = number
        self._fd = os.open(self._dir / _files.file_name(number), _OPEN_FLAGS, 0o600)
        self._seq = 0
        self._head = _entry.GENESIS_PREV
        self._size = 0
        self._write_entry("audit.genesis", {"log_id": self.log_id, "format": _entry.FORMAT})
        self._sync_now()
        fsync_dir(self._dir)
        if self._opt.seal:
            self._sealer = SealKey.create(self._dir, self.log_id)
            self._unsealed = 0  # the first seal covers the genesis through the chain head

    # -- writing ---------------------------------------------------------------------------------

    @property
    def size(self) -> int:
        """How many entries the log holds (the next entry's sequence number)."""
        with self._lock:
            return self._seq

    @property
    def head(self) -> str:
        """The chain hash of the last entry, hex."""
        with self._lock:
            return self._head.hex()

    def record(self, event: str, fields: Mapping[str, object]) -> None:
        """Append one event. Raises AuditValueError for bad input, AuditWriteError if the disk refuses."""
        check_event(event, fields)
        fields_json = _entry.encode_fields(fields, self._opt.max_string_chars)
        with self._lock:
            self._write_entry(event, fields_json=fields_json)

    def _write_entry(
        self, event: str, fields: Mapping[str, object] | None = None, fields_json: str = ""
    ) -> None:
        # Caller holds the lock (or is the constructor, before any other thread can see us).
        if self._closed:
            raise AuditError("the audit log is closed")
        if self._broken:
            raise AuditWriteError(
                "an earlier audit write failed; the log must be reopened before more work is done"
            )
        if fields is not None:
            check_event(event, fields, internal=True)
            fields_json = _entry.encode_fields(fields, self._opt.max_string_chars)
        line = _entry.encode_entry(
            self._seq, format_time(self._clock(), micro=True), self._head, event, fields_json
        )
        if len(line) + 1 > self._opt.max_entry_bytes:
            raise AuditValueError(f"audit entry of {len(line)} bytes exceeds {self._opt.max_entry_bytes}")
        if self._size and self._size + len(line) + 1 > self._opt.rotate_bytes:
            self._rotate()
        try:
            data = memoryview(line + b"\n")
            while data:
                written = os.write(self._fd, data)
                data = data[written:]
        except OSError as e:
            self._broken = True
            raise AuditWriteError(
                f"the audit log could not be written ({e.strerror}); free disk space"
            ) from e
        self._size += len(line) + 1
        self._head = _entry.chain_hash(self._head, line)
        self._seq += 1
        self._pending += 1
        if event == "audit.seal":
            return
        self._unsealed += 1
        if self._sealer is not None and self._unsealed >= self._opt.seal_every_entries:
            self._seal()
        elif self._pending >= self._opt.fsync_max_pending:
            self._sync_now()
        elif self._pending == 1 or self._unsealed == 1:
            self._wake.notify()

    def _seal(self) -> None:
        # 1. The seal entry, MAC'd under the current key, 2. made durable, 3. only then the key evolves,
        # so a crash never leaves a seal that the next key cannot follow.
        sealer = self._sealer
        if sealer is None:
            return
        self._write_entry("audit.seal", sealer.seal_fields(self._seq, self._head))
        self._sync_now()
        try:
            sealer.advance()
        except OSError as e:
            self._broken = True
            raise AuditWriteError(f"the audit sealing key could not be evolved ({e.strerror})") from e
        self._unsealed = 0
        self._last_seal = time.monotonic()

    def _rotate(self) -> None:
        self._sync_now()
        os.close(self._fd)
        self._number += 1
        flags = _OPEN_FLAGS | os.O_EXCL
        try:
            self._fd = os.open(self._dir / _files.file_name(self._number), flags, 0o600)
        except OSError as e:
            self._broken = True
            raise AuditWriteError(f"the next audit file could not be created ({e.strerror})") from e
        self._size = 0
        fsync_dir(self._dir)

    def _sync_now(self) -> None:
        try:
            os.fsync(self._fd)
        except OSError as e:
            self._broken = True
            raise AuditWriteError(f"the audit log could not be synced to disk ({e.strerror})") from e
        self._pending = 0

    def _sync_loop(self) -> None:
        with self._lock:
            while not self._closed:
                if self._pending == 0:
                    self._wait_or_seal()
                    continue
                # Let more entries gather, then commit them with one fsync. A notify for a new first
                # entry must not cut the wait short, or fsyncs would follow the write rate.
                deadline = time.monotonic() + self._opt.fsync_interval_s
                while not self._closed and (left := deadline - time.monotonic()) > 0:
                    self._wake.wait(left)
                if self._pending and not self._closed and not self._broken:
                    try:
                        self._sync_now()
                    except AuditWriteError:
                        log.error("audit log fsync failed; further records will be refused")

    def _wait_or_seal(self) -> None:
        if self._sealer is None or not self._unsealed:
            self._wake.wait()
            return
        left = self._last_seal + self._opt.seal_interval_s - time.monotonic()
        if left > 0:
            self._wake.wait(left)
            return
        if not self._broken:
            try:
                self._seal()
            except AuditError:
                log.error("audit log seal failed; further records will be refused")
                self._broken = True

    def flush(self) -> None:
        """Make every recorded entry durable now."""
        with self._lock:
            if not self._closed and self._pending:
                self._sync_now()

    def checkpoint(self, key: Ed25519PrivateKey) -> Checkpoint:
        """Sign the current head, then record that it was signed (so the log shows its own anchors)."""
        with self._lock:
            if self._pending:
                self._sync_now()
            cp = sign_checkpoint(
                key, self.log_id, self._seq, self._head.hex(), format_time(self._clock(), micro=True)
            )
            self._write_entry("audit.checkpoint", {"size": cp.size, "head": cp.head, "key_id": cp.key_id})
        return cp

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            try:
                if self._sealer is not None and self._unsealed and not self._broken:
                    self._seal()
                if self._pending and not self._broken:
                    self._sync_now()
            finally:
                self._closed = True
                self._wake.notify_all()
                os.close(self._fd)
                os.close(self._lock_fd)
        self._syncer.join()

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def open_audit_log(state_dir: Path, options: AuditOptions | None = None) -> AuditLog:
    """Open (or start) the log in STATE_DIR/audit."""
    return AuditLog(_files.audit_dir(state_dir), options)
