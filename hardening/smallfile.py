"""Reading a file that should be small, without trusting it to be."""

from __future__ import annotations

from pathlib import Path


def read_capped(path: Path | str, cap: int) -> bytes:
    """At most ``cap + 1`` bytes of ``path``: one byte over the cap, so the caller's size check sees
    an oversized file as oversized, while a huge file (or a device) is never read whole.

    OSError passes through: each caller words it for its own user (a usage error, a config error,
    a doctor finding, or a quiet None).
    """
    with open(path, "rb") as fh:
        return fh.read(cap + 1)
