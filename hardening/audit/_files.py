"""Where the log lives on disk and how it is read back: file names, streaming lines, the tail."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

_NAME = re.compile(r"audit-(\d{6,})\.log")


def audit_dir(state_dir: Path) -> Path:
    return state_dir / "audit"


def file_name(number: int) -> str:
    return f"audit-{number:06d}.log"


def log_files(directory: Path) -> list[tuple[int, Path]]:
    """The log's files in chain order (by their number; a gap is found by the sequence numbers)."""
    if not directory.is_dir():
        return []
    found = []
    for child in directory.iterdir():
        m = _NAME.fullmatch(child.name)
        if m and child.is_file():
            found.append((int(m.group(1)), child))
    return sorted(found)


# Read in large blocks: one readline() per entry was most of `audit verify`'s I/O time.
BLOCK = 1 << 18


class Line(NamedTuple):
    """One line of a log file. A NamedTuple, not a dataclass: verify builds a million of them."""

    path: Path
    number: int  # 1-based line number in its file
    raw: bytes  # without the newline
    complete: bool  # False for a last line with no newline (a write in progress, or a crash)
    oversized: bool = False


def iter_lines(directory: Path, max_line_bytes: int, block: int = BLOCK) -> Iterator[Line]:
    """Stream every line of every file; memory stays bounded by ``max_line_bytes`` plus one block."""
    for path, first, complete, odd in iter_blocks(directory, max_line_bytes, block):
        for i, raw in enumerate(complete):
            yield Line(path, first + i, raw, True)
        if odd is not None:
            yield odd


def iter_blocks(
    directory: Path, max_line_bytes: int, block: int = BLOCK, paths: Sequence[Path] | None = None
) -> Iterator[tuple[Path, int, list[bytes], Line | None]]:
    """Every file (or only ``paths``) in blocks: its path, the number of the block's first line, the
    block's complete lines, and an odd line (oversized, or a last line with no newline) that ends the file."""
    for path in [p for _, p in log_files(directory)] if paths is None else paths:
        yield from _file_blocks(path, max_line_bytes, block)


def _file_blocks(
    path: Path, max_line_bytes: int, block: int
) -> Iterator[tuple[Path, int, list[bytes], Line | None]]:
    # A line may hold max_line_bytes + 1 bytes (the newline the writer's cap counts is not part of
    # raw); anything longer is reported once, cut, and ends the file.
    limit = max_line_bytes + 1
    number = 1
    tail = b""
    with open(path, "rb") as fh:
        while data := fh.read(block):
            lines = (tail + data if tail else data).split(b"\n")
            tail = lines.pop()
            if lines and max(map(len, lines)) > limit:  # one C pass; the loop only finds which line
                i = next(i for i, raw in enumerate(lines) if len(raw) > limit)
                yield path, number, lines[:i], Line(path, number + i, lines[i][: limit + 1], False, True)
                return
            yield path, number, lines, None
            number += len(lines)
            if len(tail) > limit:
                yield path, number, [], Line(path, number, tail[: limit + 1], False, True)
                return
    if tail:
        yield path, number, [], Line(path, number, tail, False)


def read_first_line(path: Path, max_line_bytes: int) -> bytes | None:
    with open(path, "rb") as fh:
        raw = fh.readline(max_line_bytes + 2)
    return raw[:-1] if raw.endswith(b"\n") else None


def pread(fd: int, length: int, offset: int) -> bytes:
    """Read at an offset on every OS (Windows has no os.pread); the caller holds the file exclusively."""
    os.lseek(fd, offset, os.SEEK_SET)
    chunks = []
    while length > 0:
        chunk = os.read(fd, length)
        if not chunk:
            break
        chunks.append(chunk)
        length -= len(chunk)
    return b"".join(chunks)


def read_tail(fd: int, max_line_bytes: int) -> tuple[bytes | None, int]:
    """Return the last complete line of the open file and the offset where complete lines end.

    Bytes after that offset are a torn write (a crash in the middle of an append).
    """
    size = os.fstat(fd).st_size
    window = min(size, 2 * max_line_bytes + 4)
    data = pread(fd, window, size - window)
    end = data.rfind(b"\n")
    if end < 0:
        return None, 0 if window == size else -1
    start = data.rfind(b"\n", 0, end) + 1
    if start == 0 and window != size:
        return None, -1  # the last line is longer than any entry can be
    return data[start:end], size - window + end + 1
