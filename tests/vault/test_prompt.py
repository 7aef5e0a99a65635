"""On a terminal, ``creds add`` asks twice without echo; the secret never shows on the terminal."""

from __future__ import annotations

import os
import pty
import select
import sys
import time
from pathlib import Path

import pytest

from hardening.vault import KeySource, VaultPaths, open_store
from tests.vault.conftest import PLANTED

ROOT = Path(__file__).resolve().parents[2]


def read_until(fd: int, marker: bytes, seen: bytearray, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while marker not in seen:
        left = deadline - time.monotonic()
        assert left > 0, f"waited for {marker!r}, got {bytes(seen)!r}"
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                chunk = b""
            assert chunk, f"terminal closed before {marker!r}: {bytes(seen)!r}"
            seen += chunk


@pytest.mark.skipif(sys.platform != "linux", reason="pty")
def test_prompt_without_echo(tmp_path: Path) -> None:
    state = tmp_path / "state"
    pid, fd = pty.fork()
    if pid == 0:  # the child: the operator's shell running midbox on a terminal
        os.environ["PYTHONPATH"] = str(ROOT)
        os.execv(
            sys.executable,
            [
                sys.executable,
                "-m",
                "appliance",
                "creds",
                "add",
                "web",
                "--type",
                "http-basic",
                "--user",
                "admin",
                "--state-dir",
                str(state),
            ],
        )
    seen = bytearray()
    try:
        read_until(fd, b"Password for web: ", seen)
        os.write(fd, PLANTED + b"\n")
        read_until(fd, b"Repeat: ", seen)
        os.write(fd, PLANTED + b"\n")
        read_until(fd, b"added web", seen)
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 0, bytes(seen)
    assert PLANTED not in seen  # not echoed
    paths = VaultPaths(state)
    with open_store(paths, KeySource(paths.host_key)) as store:
        assert store.reveal("web")[0].reveal() == PLANTED
