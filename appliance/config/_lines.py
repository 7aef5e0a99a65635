"""Where a key sits in the config text, so an error can name its line (tomllib keeps no positions).

A best effort over the common layout (``[table]`` / ``[[allow]]`` headers, one ``key = value`` a line);
an inline table or a dotted key simply gets no line number.
"""

from __future__ import annotations

import difflib
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


def did_you_mean(key: str, known: Iterable[str]) -> str:
    """``; did you mean 'credentials'?`` for a near miss, else nothing."""
    close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""
