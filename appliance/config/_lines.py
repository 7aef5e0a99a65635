"""Where a key sits in the config text, so an error can name its line (tomllib keeps no positions).

A best effort over the common layout (``[table]`` / ``[[allow]]`` headers, one ``key = value`` a line);
an inline table or a dotted key simply gets no line number.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

_HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\"-]+?)\s*\]\]?\s*(#.*)?$")


@dataclass(frozen=True)
class Section:
    """Lines [start, end) of one table of the text; ``start`` is its header line (0 for the top)."""

    lines: tuple[str, ...]
    start: int
    end: int

    def line_of(self, key: str) -> int | None:
        """The 1-based line of ``key = ...`` in this section, or of its header when the key is absent."""
        pattern = re.compile(rf"^\s*\"?{re.escape(key)}\"?\s*=")
        for i in range(self.start, self.end):
            if pattern.match(self.lines[i]):
                return i + 1
        return None

    @property
    def header_line(self) -> int | None:
        return self.start + 1 if self.start < self.end and _HEADER.match(self.lines[self.start]) else None


def sections(text: str) -> dict[str, list[Section]]:
    """Every table by name ("" for the top level); an array of tables (``[[allow]]``) has one per entry."""
    lines = tuple(text.splitlines())
    starts: list[tuple[str, int]] = [("", 0)]
    for i, line in enumerate(lines):
        m = _HEADER.match(line)
        if m:
            starts.append((m.group(2).replace('"', ""), i))
    out: dict[str, list[Section]] = {}
    for n, (name, start) in enumerate(starts):
        end = starts[n + 1][1] if n + 1 < len(starts) else len(lines)
        out.setdefault(name, []).append(Section(lines, start, end))
    return out


def _distance(a: str, b: str) -> int:
    """Edits (insert, delete, replace, swap two neighbours) from ``a`` to ``b``."""
    rows = [list(range(len(b) + 1))]
    for i, ca in enumerate(a, 1):
        row = [i]
        for j, cb in enumerate(b, 1):
            row.append(min(rows[-1][j] + 1, row[j - 1] + 1, rows[-1][j - 1] + (ca != cb)))
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                row[j] = min(row[j], rows[-2][j - 2] + 1)
        rows.append(row)
    return rows[-1][-1]


def closest(key: str, known: Iterable[str]) -> str | None:
    """The known name ``key`` is most likely a misspelling of (difflib is not in the frozen binary)."""
    if len(key) > 64:  # no key is that long; and the distance costs len(key) * len(name)
        return None
    limit = min(2, max(1, len(key) // 3))
    scored = sorted((_distance(key.lower(), k.lower()), k) for k in known)
    return scored[0][1] if scored and scored[0][0] <= limit else None


def did_you_mean(key: str, known: Iterable[str]) -> str:
    """``; did you mean 'credentials'?`` for a near miss, else nothing."""
    near = closest(key, known)
    return f"; did you mean {near!r}?" if near else ""
