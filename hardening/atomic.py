"""The one way state reaches disk: temp file beside the target, fsync, rename, fsync the directory;
and the one group commit (``GroupCommit``) that lets concurrent writers share an fsync."""

from __future__ import annotations

import contextlib
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)


def atomic_write(
    path: Path, data: bytes, mode: int = 0o600, *, durable: bool = True, dir_sync: DirSync | None = None
) -> None:
    """Replace ``path`` with ``data`` so a crash leaves either the old or the new file, never a mix.

    On Windows a private ``mode`` (no group/other bits) becomes the private DACL, set on the empty
    temp file before any data goes in: the mode argument means nothing there, and a directory's
    inherited entries may not be private.

    ``durable=False`` skips both fsyncs: still all-or-nothing for readers (the rename is atomic), but a
    power loss may bring back the previous file. Only for what is rewritten every few seconds anyway
    (the status file), where two fsyncs per poll would cost more than the file is worth.

    ``dir_sync`` (the directory's ``DirSync``) shares the directory's fsync with concurrent writers:
    the file is still fsync'd, and the rename is durable when this returns, as without it.
    """
    directory = path.parent
    tmp = directory / f".{path.name}.{secrets.token_hex(8)}.tmp"
    fd = os.open(tmp, _FLAGS, mode)
    try:
        if os.name == "nt" and not mode & 0o077:
            private_on_windows(fd, tmp)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            if durable:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if durable:
        if dir_sync is not None:
            dir_sync.sync(dir_sync.changed())
        else:
            fsync_dir(directory)


class GroupCommit:
    """Group commit: one sync serves every change counted before it began.

    A writer makes its change (appends a line, renames a file), counts it with ``changed()``, and asks
    for ``sync(its number)``. A sync that began after the change covers it, so when many threads
    change at once, one ``flush`` (an fsync) serves them all instead of one each; the others wait for
    it and usually find their change covered. ``sync()`` without a number waits for every change
    counted so far (for a change made lazily, that must be durable later).

    The owner may also make every change durable by other means (a rewrite that is fsync'd whole): it
    holds ``exclusive()`` so no flush runs meanwhile, then says ``all_durable()``.
    """

    def __init__(self, flush: Callable[[], None]) -> None:
        self._flush = flush
        self._lock = threading.Lock()  # the counters; a leaf: nothing else is taken while it is held
        self._sync_lock = threading.Lock()  # one flush at a time
        self._changed = 0
        self._synced = 0

    def changed(self) -> int:
        """Count one change, already made; its number, for ``sync``."""
        with self._lock:
            self._changed += 1
            return self._changed

    def latest(self) -> int:
        """The number of the last change counted: ``durable_upto() >= latest()`` once all are durable."""
        with self._lock:
            return self._changed

    def durable_upto(self) -> int:
        """How many of the changes counted a finished flush (or rewrite) covers."""
        with self._lock:
            return self._synced

    def sync(self, upto: int | None = None) -> None:
        """Return once change ``upto`` (default: every change counted so far) is durable."""
        with self._lock:
            target = self._changed if upto is None else upto
        with self._sync_lock:
            with self._lock:
                if self._synced >= target:
                    return  # a flush that began after that change has finished
                covered = self._changed  # every change counted by now was made before this flush
            self._flush()
            with self._lock:
                self._synced = max(self._synced, covered)

    def exclusive(self) -> threading.Lock:
        """Held, no flush runs: for a rewrite that replaces what ``flush`` would sync."""
        return self._sync_lock

    def all_durable(self) -> None:
        """Every change counted so far is durable (the owner rewrote and fsync'd them all)."""
        with self._lock:
            self._synced = self._changed


class DirSync(GroupCommit):
    """One directory's fsync, shared by the threads that rename or unlink in it."""

    def __init__(self, directory: Path) -> None:
        super().__init__(lambda: fsync_dir(directory))


def private_on_windows(fd: int, path: Path) -> None:
    """Give a file just created (open as ``fd``, still empty) the private DACL; on failure close ``fd``.

    Only for Windows, where the ``mode`` of os.open is ignored and Wine does not apply inheritance.
    """
    from hardening import winacl

    try:
        winacl.make_private(path, is_dir=False)
    except BaseException:
        os.close(fd)
        raise


def fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable (a no-op where directories cannot be opened, as on Windows)."""
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LockTimeoutError(OSError):
    """Another process held the lock for longer than the caller would wait."""


@contextlib.contextmanager
def file_lock(path: Path, timeout_s: float = 10.0) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``path`` (created 0600) for the duration of the block.

    Writers of one state file serialise on its lock file; readers need no lock because every
    write is a rename. The lock dies with the process, so a killed writer never wedges the next.
    """
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
    fd = os.open(path, flags, 0o600)
    try:
        deadline = time.monotonic() + timeout_s
        while not _try_lock(fd):
            if time.monotonic() >= deadline:
                raise LockTimeoutError(
                    f"{path} is locked by another midbox process; try again when it finishes"
                )
            time.sleep(0.05)
        try:
            yield
        finally:
            _unlock(fd)
    finally:
        os.close(fd)


def _try_lock(fd: int) -> bool:
    if os.name == "nt":
        import msvcrt

        try:
            os.lseek(fd, 0, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined]
        except OSError:
            return False
        return True
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _unlock(fd: int) -> None:
    if os.name == "nt":
        import msvcrt

        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)  # type: ignore[attr-defined]
        return
    import fcntl

    fcntl.flock(fd, fcntl.LOCK_UN)


def remove_stale_temps(path: Path) -> int:
    """Delete temp files a killed writer of ``path`` left behind; call only while holding its lock."""
    removed = 0
    for leftover in path.parent.glob(f".{path.name}.*.tmp"):
        with contextlib.suppress(FileNotFoundError):
            leftover.unlink()
            removed += 1
    return removed
