"""Stored credentials made through the real ``midbox creds add`` CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def creds_add(state: Path, alias: str, kind: str) -> None:
    env = {"PYTHONPATH": str(ROOT), "PATH": os.environ.get("PATH", "")}
    r = subprocess.run(
        [sys.executable, "-m", "appliance", "creds", "add", alias, "--type", kind, "--state-dir", str(state)]
        + (["--user", "u"] if kind.startswith("ssh") else []),
        env=env,
        input="s3cret-value\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
