"""Installing from the bundle needs no network: run install.sh inside a network namespace with no routes.

Uses the frozen binary from MIDBOX_FROZEN_BINARY when set, else a stand-in script (the test is about
the installer and the bundle, not the binary). Needs root and `ip netns`; skips with the reason if not.
"""

from __future__ import annotations

import hashlib
import io
import os
import secrets
import shutil
import stat
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hardening.release import render_sums, sign

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "build" / "tools"))
from midbox_build.bundle import make_tar_gz  # noqa: E402

TOP = "midbox-0.1.0-linux-x86_64"
FAKE_BINARY = b"#!/bin/sh\necho 'midbox 0.1.0 (stand-in)'\n"


def _binary() -> bytes:
    frozen = os.environ.get("MIDBOX_FROZEN_BINARY")
    return Path(frozen).read_bytes() if frozen else FAKE_BINARY


def _unpacked_bundle(tmp_path: Path) -> Path:
    files_dir = REPO / "build" / "bundle-files"
    files = {
        "midbox": _binary(),
        "midbox.cdx.json": b"{}\n",
        "INSTALL.md": (files_dir / "INSTALL.md").read_bytes(),
        "install.sh": (files_dir / "linux" / "install.sh").read_bytes(),
        "midbox.service": (files_dir / "linux" / "midbox.service").read_bytes(),
    }
    sums = render_sums({n: hashlib.sha256(d).hexdigest() for n, d in files.items()})
    files["SHA256SUMS"] = sums
    files["SHA256SUMS.minisig"] = sign(sums, Ed25519PrivateKey.generate(), "test")
    with tarfile.open(fileobj=io.BytesIO(make_tar_gz(TOP, files, 1_700_000_000))) as tar:
        tar.extractall(tmp_path, filter="data")
    return tmp_path / TOP


def _run(cmd: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


@pytest.fixture
def netns() -> Iterator[str]:
    if os.geteuid() != 0:
        pytest.skip("needs root to create a network namespace (ip netns add)")
    if shutil.which("ip") is None:
        pytest.skip("needs iproute2 (ip netns)")
    name = f"midbox-airgap-{secrets.token_hex(4)}"
    made = _run(["ip", "netns", "add", name], timeout=10)
    if made.returncode != 0:
        pytest.skip(f"ip netns add is not permitted here: {made.stderr.strip()}")
    try:
        yield name
    finally:
        _run(["ip", "netns", "delete", name], timeout=10)


@pytest.mark.skipif(shutil.which("sha256sum") is None, reason="install.sh needs coreutils sha256sum")
def test_install_runs_with_no_network(tmp_path: Path, netns: str) -> None:
    bundle = _unpacked_bundle(tmp_path / "media")
    root = tmp_path / "root"
    # 1. the namespace really has no way out: only a downed loopback, no routes
    links = _run(["ip", "netns", "exec", netns, "ip", "-o", "link"]).stdout.splitlines()
    assert [ln.split(":")[1].strip() for ln in links] == ["lo"]
    for family in ("-4", "-6"):
        assert _run(["ip", "netns", "exec", netns, "ip", family, "route"]).stdout.strip() == ""
    # 2. the whole install, including the installed binary's --version, inside it
    done = _run(
        ["ip", "netns", "exec", netns, "sh", str(bundle / "install.sh"), "--root", str(root), "--no-user"]
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "midbox 0.1.0" in done.stdout
    binary = root / "usr/local/bin/midbox"
    assert stat.S_IMODE(binary.stat().st_mode) == 0o755
    assert binary.read_bytes() == _binary()
    assert stat.S_IMODE((root / "var/lib/midbox").stat().st_mode) == 0o700
    unit = (root / "etc/systemd/system/midbox.service").read_text()
    assert "ExecStart=/usr/local/bin/midbox run" in unit and "@BINARY@" not in unit


@pytest.mark.skipif(shutil.which("sha256sum") is None, reason="install.sh needs coreutils sha256sum")
def test_install_refuses_a_changed_file(tmp_path: Path) -> None:
    bundle = _unpacked_bundle(tmp_path / "media")
    (bundle / "midbox").write_bytes(b"#!/bin/sh\necho evil\n")
    root = tmp_path / "root"
    done = _run(["sh", str(bundle / "install.sh"), "--root", str(root), "--no-user"])
    assert done.returncode == 1
    assert "do not install" in done.stderr
    assert not (root / "usr/local/bin/midbox").exists()
