"""Reading back the small JSON files the appliance writes into its state dir for other commands."""

from __future__ import annotations

import json
from pathlib import Path

from hardening.smallfile import read_capped


def read_json_object(path: Path, max_bytes: int) -> dict[str, object] | None:
    """The file's JSON object, or None when it is absent, oversize or not what we write.

    None rather than an error: a reader (``status``, ``reload``) treats a missing or foreign file as
    "no answer yet", and the writer replaces it atomically, so a torn file is never seen.
    """
    try:
        data = read_capped(path, max_bytes)
    except OSError:
        return None
    if len(data) > max_bytes:
        return None
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None
