"""Release versions, compared as numbers: 0.10.0 is newer than 0.9.9, and 1.0.0rc1 older than 1.0.0."""

from __future__ import annotations

import re
from dataclasses import dataclass

from appliance.errors import UsageError

# PEP 440's common subset: N(.N)* with an optional a/b/rc pre-release; nothing else is a midbox version.
_VERSION = re.compile(r"(\d{1,9}(?:\.\d{1,9}){0,4})(?:(a|b|rc)(\d{1,9}))?")
_PRE_RANK = {"a": 0, "b": 1, "rc": 2}
_FINAL = 3


@dataclass(frozen=True, order=True)
class Version:
    release: tuple[int, ...]
    pre_rank: int
    pre_number: int
    text: str

    def __str__(self) -> str:
        return self.text


def parse_version(text: str) -> Version:
    m = _VERSION.fullmatch(text)
    if m is None:
        raise UsageError(
            f"{text[:40]!r} is not a release version (like 1.2.3 or 1.2.3rc1): use a midbox bundle"
        )
    numbers = [int(n) for n in m.group(1).split(".")]
    while len(numbers) > 1 and numbers[-1] == 0:  # 1.2 == 1.2.0
        numbers.pop()
    pre = m.group(2)
    rank = _PRE_RANK[pre] if pre else _FINAL
    return Version(tuple(numbers), rank, int(m.group(3) or 0), text)


def is_downgrade(current: str, new: str) -> bool:
    """True when ``new`` is older than, or the same as, ``current``: reinstalling is a downgrade too."""
    a, b = parse_version(current), parse_version(new)
    return (b.release, b.pre_rank, b.pre_number) <= (a.release, a.pre_rank, a.pre_number)
