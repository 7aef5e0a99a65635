"""The signing CLI run as an admin does, with helpers that assert its exit code."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


FAR = dt.datetime(2099, 1, 1, tzinfo=dt.UTC)


def midbox(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIDBOX_")}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "appliance", *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def ok(*args: str | Path, cwd: Path) -> str:
    r = midbox(*args, cwd=cwd)
    assert r.returncode == 0, r.stderr
    return r.stdout


def fails(code: int, *args: str | Path, cwd: Path) -> str:
    r = midbox(*args, cwd=cwd)
    assert r.returncode == code, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr  # one line, no traceback
    return lines[0]
