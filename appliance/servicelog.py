"""The Windows service's log file, rotated by size.

The one thing midbox used from ``logging.handlers`` was ``RotatingFileHandler``, and that module
brings ``pickle`` (with ``_pickle`` and ``pprint``, about 90 KB of the binary) for its socket and
queue handlers, which midbox never uses (issue 19). This is the same rotation in a few lines: before
a record would take the file to ``max_bytes``, ``NAME.(n-1)`` moves to ``NAME.n`` down to ``NAME``
to ``NAME.1``, the oldest falls off, and a fresh file starts. Same names and order as the standard
handler, so existing log readers and the docs stay right.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path


class RotatingLogFile(logging.FileHandler):
    """A UTF-8 log file that keeps at most ``backups`` older files beside it, each under ``max_bytes``."""

    def __init__(self, path: Path, *, max_bytes: int, backups: int) -> None:
        if max_bytes <= 0 or backups <= 0:
            raise ValueError("set max_bytes and backups above 0: a log that never rotates grows without end")
        super().__init__(path, mode="a", encoding="utf-8")
        self.max_bytes = max_bytes
        self.backups = backups

    def emit(self, record: logging.LogRecord) -> None:
        # Handler.handle holds the handler's lock around emit, so rotation and write do not interleave.
        try:
            if self._would_overflow(record):
                self._rotate()
        except Exception:  # a log that cannot rotate must not stop the service: report as logging does
            self.handleError(record)
            return
        super().emit(record)

    def _would_overflow(self, record: logging.LogRecord) -> bool:
        if os.path.exists(self.baseFilename) and not os.path.isfile(self.baseFilename):
            return False  # a device or pipe named as the log is written to, never renamed (as logging does)
        if self.stream is None:
            self.stream = self._open()
        size = self.stream.seek(0, os.SEEK_END)
        line = f"{self.format(record)}{self.terminator}".encode()
        # A first record bigger than the cap is written anyway rather than rotating an empty file forever.
        return size > 0 and size + len(line) >= self.max_bytes

    def _rotate(self) -> None:
        if self.stream is not None:
            self.stream.close()
            self.stream = None  # FileHandler reopens it on the next emit
        base = self.baseFilename
        for n in range(self.backups - 1, 0, -1):
            if os.path.exists(f"{base}.{n}"):
                os.replace(f"{base}.{n}", f"{base}.{n + 1}")
        if os.path.exists(base):
            os.replace(base, f"{base}.1")
