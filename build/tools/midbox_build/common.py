"""Shared helpers of the build scripts: repository facts, subprocesses with a clean environment."""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
BUILD_DIR = REPO / "build"
LOCK_DIR = BUILD_DIR / "lock"
DIST = REPO / "dist"

# Variables a build may see. Everything else of the caller's environment is left out so a
# developer's PYTHONPATH, PIP_* or locale settings cannot change the bytes.
_PASS_ENV = ("PATH", "HOME", "TMPDIR", "SYSTEMROOT", "TEMP", "TMP", "LOCALAPPDATA", "APPDATA", "USERPROFILE")


class BuildError(Exception):
    """A build step failed; the message says which and what to do."""


@dataclass(frozen=True)
class Target:
    """What this machine builds: the platform tag used in file names and lock files."""

    os_name: str  # linux / windows
    arch: str  # x86_64

    @property
    def tag(self) -> str:
        return f"{self.os_name}-{self.arch}"

    @property
    def binary_name(self) -> str:
        suffix = ".exe" if self.os_name == "windows" else ""
        return f"midbox-{self.tag}{suffix}"

    @property
    def runtime_lock(self) -> Path:
        return LOCK_DIR / f"requirements-{self.os_name}.txt"

    @property
    def build_lock(self) -> Path:
        name = "requirements-build.txt" if self.os_name == "linux" else "requirements-build-windows.txt"
        return LOCK_DIR / name

    @property
    def manifest(self) -> Path:
        return BUILD_DIR / f"manifest-{self.os_name}.txt"


def host_target() -> Target:
    machine = platform.machine().lower()
    arch = {"amd64": "x86_64", "x86_64": "x86_64"}.get(machine)
    if arch is None:
        raise BuildError(f"unsupported build architecture {machine!r}: releases are x86_64 only")
    if sys.platform.startswith("linux"):
        return Target("linux", arch)
    if sys.platform == "win32":
        return Target("windows", arch)
    raise BuildError(f"unsupported build OS {sys.platform!r}: build on Linux or Windows")


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in _PASS_ENV}
    env.update({"LC_ALL": "C.UTF-8", "TZ": "UTC", "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1"})
    env.update(extra)
    return env


def run(cmd: list[str], *, env: dict[str, str], cwd: Path | None = None, quiet: bool = False) -> str:
    """Run a build step; its output goes to our stderr unless ``quiet``; returns stdout."""
    proc = subprocess.run(
        cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL if quiet else None, text=True
    )
    if proc.returncode != 0:
        raise BuildError(f"step failed (exit {proc.returncode}): {' '.join(cmd)}")
    return proc.stdout


def git(*args: str, cwd: Path = REPO) -> str:
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise BuildError(f"git {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout.strip()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def venv_python(venv: Path) -> Path:
    if sys.platform == "win32":
        return venv / "Scripts" / "python.exe"
    return venv / "bin" / "python"
