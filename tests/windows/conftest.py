"""Windows code paths, run for real in Windows' own CPython under Wine.

``build/wine prepare`` makes the Wine root (a cache directory outside the checkout, e.g.
``~/.cache/midbox-build/wine``; MIDBOX_WINE_ROOT overrides it): the embeddable CPython 3.11 with the hash-locked
win_amd64 wheels, and a Wine prefix. These tests skip without it, unless MIDBOX_REQUIRE_WINE=1
(set by CI, which prepares it), where its absence is a failure. Wine is not Windows: what these
tests show and what only a real Windows host can show is listed in build/README.md.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "build" / "tools"))
from midbox_build.wine import default_root  # noqa: E402

WINE_ROOT = default_root(dict(os.environ))

WinPy = Callable[..., subprocess.CompletedProcess[str]]


def wine_path(path: Path) -> str:
    """The Windows path of a Linux path: Wine maps the Linux root to drive Z:."""
    return "Z:" + str(path.resolve()).replace("/", "\\")


def wine_env(root: Path = WINE_ROOT) -> dict[str, str]:
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": os.environ.get("HOME", "/root"),
        "WINEPREFIX": str(root / "prefix"),
        "WINEDEBUG": "-all",
        "WINEDLLOVERRIDES": "mscoree,mshtml=",  # no Mono/Gecko install prompts
        "LC_ALL": "C.UTF-8",
    }


@pytest.fixture(scope="session")
def wine_root() -> Path:
    python = WINE_ROOT / "python" / "python.exe"
    if not python.is_file():
        if os.environ.get("MIDBOX_REQUIRE_WINE") == "1":
            pytest.fail(f"{python} is missing: run build/wine prepare")
        pytest.skip("no Windows CPython under Wine: run build/wine prepare (CI does)")
    return WINE_ROOT


@pytest.fixture(scope="session")
def winpy(wine_root: Path) -> WinPy:
    """Run Python code in Windows' CPython under Wine with this repository importable.

    Output goes through pipes: Wine cannot give a Windows program a Linux regular file as stdout.
    """

    def run(
        code: str, *args: str, timeout: float = 120.0, cwd: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        prelude = f"import sys; sys.path.insert(0, {wine_path(REPO)!r})\n"
        return subprocess.run(
            ["wine", str(wine_root / "python" / "python.exe"), "-c", prelude + code, *args],
            env=wine_env(wine_root),
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            cwd=cwd,
        )

    return run


def result_of(proc: subprocess.CompletedProcess[str]) -> Any:
    """The JSON a snippet printed as its last line; fails the test with its stderr otherwise."""
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        pytest.fail(f"under Wine: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return json.loads(lines[-1])
