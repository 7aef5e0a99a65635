"""Waiting until a pushed config is the one in force (read from status.json)."""

from __future__ import annotations

import json
import time
from pathlib import Path


def in_force(state_dir: Path, version: int, timeout: float = 30) -> float:
    """Seconds until status.json says ``version`` is running (written after the first poll on it)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            status = json.loads((state_dir / "status.json").read_text())
        except (OSError, ValueError):
            status = {}
        if (status.get("config") or {}).get("version") == version and status.get("state") == "running":
            return time.monotonic() - started
        time.sleep(0.01)
    raise AssertionError(f"config version {version} not in force within {timeout} s")
