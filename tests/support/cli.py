"""The two ways tests run the command line: in-process through ``main``'s seam, or as a process.

In-process is fast and sees exceptions; a process is what an operator runs, with its own
environment, signals and exit code. Use the process only when the test is about the process."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

from appliance.cli import main

ROOT = Path(__file__).resolve().parents[2]


class Result(NamedTuple):
    code: int
    out: str
    err: str


def run_cli(*args: str | Path, environ: Mapping[str, str] | None = None, stdin: str = "") -> Result:
    """``midbox ARGS`` in this process; ``environ`` defaults to this process's environment."""
    out, err = io.StringIO(), io.StringIO()
    code = main([str(a) for a in args], environ=environ, stdin=io.StringIO(stdin), stdout=out, stderr=err)
    return Result(code, out.getvalue(), err.getvalue())


def child_env(**extra: str) -> dict[str, str]:
    """A minimal environment for a child ``midbox``: no MIDBOX_* of the test runner leaks in."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(ROOT), **extra}


def run_process(
    *args: str | Path,
    env: Mapping[str, str] | None = None,
    stdin: str | None = None,
    cwd: Path = ROOT,
    binary: Path | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """``midbox ARGS`` as a child process: the source tree's, or a built ``binary``."""
    command = [str(binary)] if binary else [sys.executable, "-m", "appliance"]
    return subprocess.run(
        [*command, *map(str, args)],
        env=dict(child_env() if env is None else env),
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        check=False,
    )
