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
from collections.abc import Callable, Iterator
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
    _warm_up(WINE_ROOT)
    return WINE_ROOT


def _warm_up(root: Path) -> None:
    """Start Wine once before any test times its own calls. A first start may update the prefix, or
    meet a wineserver left behind by a killed run (CI once waited 120 s on it): that one is killed and
    Wine started again, once."""
    start = ["wine", str(root / "python" / "python.exe"), "-c", "pass"]
    for _ in range(2):
        try:
            subprocess.run(
                start,
                env=wine_env(root),
                capture_output=True,
                timeout=300,
                stdin=subprocess.DEVNULL,
                check=False,
            )
            return
        except subprocess.TimeoutExpired:
            subprocess.run(
                ["wineserver", "-k"], env=wine_env(root), capture_output=True, timeout=60, check=False
            )


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


@pytest.fixture
def wine_awake(wine_root: Path) -> Iterator[None]:
    """One ordinary Wine process that lives as long as the test, and starts the SCM itself.

    When the last ordinary Wine process exits, wineserver shuts the prefix down and services.exe
    ends every service with it (no stop control: just gone). And services.exe, started on demand
    by the first process that opens the SCM, keeps that process's stdout: if that were a test's
    capture pipe, the test would wait for its end until the timeout. So the keeper opens the SCM
    first, and the tests' own Wine processes come and go beside it.
    """
    keeper = subprocess.Popen(
        [
            "wine",
            str(wine_root / "python" / "python.exe"),
            "-c",
            "import ctypes, sys\n"
            "scm = ctypes.WinDLL('advapi32').OpenSCManagerW(None, None, 1)\n"
            "print('up' if scm else 'no scm', flush=True)\n"
            "sys.stdin.read()",
        ],
        env=wine_env(wine_root),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert keeper.stdout is not None
        assert keeper.stdout.readline().strip() == "up", "Wine's service control manager did not start"
        yield
    finally:
        assert keeper.stdin is not None
        keeper.stdin.close()
        try:
            keeper.wait(timeout=30)
        except subprocess.TimeoutExpired:
            keeper.kill()
            keeper.wait()
        if keeper.stdout is not None:
            keeper.stdout.close()
