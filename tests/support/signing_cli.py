"""The signing CLI run as an admin does, with helpers that assert its exit code."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
from pathlib import Path

from tests.support.cli import ROOT, run_process

FAR = dt.datetime(2099, 1, 1, tzinfo=dt.UTC)


def midbox(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIDBOX_")}
    return run_process(*args, env={**env, "PYTHONPATH": str(ROOT)}, cwd=cwd)


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
