"""Checks of a built binary. Run only when MIDBOX_FROZEN_BINARY names one:

./build/build && MIDBOX_FROZEN_BINARY=dist/midbox-linux-x86_64 python -m pytest tests/build -q
"""

from __future__ import annotations

import hashlib
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hardening.release import public_key_file, render_sums, sign

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "build" / "tools"))
from midbox_build import manifest, smoke  # noqa: E402
from midbox_build.bundle import make_tar_gz  # noqa: E402
from midbox_build.common import host_target  # noqa: E402

FROZEN = os.environ.get("MIDBOX_FROZEN_BINARY", "")
pytestmark = [
    pytest.mark.built_binary,
    pytest.mark.skipif(
        not FROZEN,
        reason="set MIDBOX_FROZEN_BINARY to a built binary (build/build makes dist/midbox-linux-x86_64)",
    ),
]


@pytest.fixture(scope="module")
def binary() -> Path:
    path = Path(FROZEN).resolve()
    if not path.is_file():
        pytest.fail(f"MIDBOX_FROZEN_BINARY={FROZEN} does not exist")
    return path


def _run(binary: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8"}
    return subprocess.run([str(binary), *args], env=env, capture_output=True, text=True, timeout=60)


def test_smoke_checks_pass(binary: Path) -> None:
    failed = [f"{o.check.name}: {o.detail}" for o in smoke.run_all(binary) if not o.ok]
    assert failed == []


def test_version_names_the_source_commit(binary: Path) -> None:
    out = _run(binary, "--version").stdout
    assert re.fullmatch(r"midbox \d+\.\d+\.\d+ \([0-9a-f]{40}\)\n", out), out


def test_contents_match_the_manifest_and_hold_no_dev_tools(binary: Path) -> None:
    frozen = pytest.importorskip("midbox_build.frozen")
    pytest.importorskip("PyInstaller")
    entries = frozen.read_entries(binary)
    assert manifest.forbidden_found(entries, windows=binary.suffix.lower() == ".exe") == []
    names = {e.name.split(".", 1)[0] for e in entries if e.kind == "module"}
    assert not names & {"devinstance", "pytest", "_pytest", "hypothesis", "mypy", "bandit", "ruff"}
    expected = manifest.read_manifest(REPO / "build" / host_target().manifest.name)
    assert manifest.compare(expected, manifest.manifest_lines(entries)) == []


def test_frozen_bundle_verify(binary: Path, tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    (tmp_path / "release.pub").write_bytes(public_key_file(key.public_key()))
    files = {"midbox": b"payload", "INSTALL.md": b"docs\n"}
    sums = render_sums({n: hashlib.sha256(d).hexdigest() for n, d in files.items()})
    good = {**files, "SHA256SUMS": sums, "SHA256SUMS.minisig": sign(sums, key, "t")}
    bundle = tmp_path / "b.tar.gz"
    bundle.write_bytes(make_tar_gz("midbox-0.1.0-linux-x86_64", good, 1))
    assert (
        _run(binary, "bundle", "verify", str(bundle), "--pubkey", str(tmp_path / "release.pub")).returncode
        == 0
    )
    bundle.write_bytes(make_tar_gz("midbox-0.1.0-linux-x86_64", {**good, "midbox": b"evil"}, 1))
    bad = _run(binary, "bundle", "verify", str(bundle), "--pubkey", str(tmp_path / "release.pub"))
    assert bad.returncode == 1 and "Traceback" not in bad.stderr


def test_report_cold_start(binary: Path) -> None:
    # Measured and reported, never asserted: the figure depends on the machine.
    times = []
    for _ in range(5):
        started = time.perf_counter()
        assert _run(binary, "--version").returncode == 0
        times.append(time.perf_counter() - started)
    print(f"\nmidbox --version: median {statistics.median(times) * 1000:.0f} ms over 5 runs")


@pytest.mark.skipif(
    sys.platform == "win32", reason="the Linux binary runs in UTF-8 mode; Windows keeps the CJK codecs"
)
def test_starts_under_a_legacy_cjk_locale(binary: Path, tmp_path: Path) -> None:
    # The Linux binary ships no CJK codecs; UTF-8 mode is what lets CPython start under a GBK locale
    # (without it: "init_fs_encoding: failed to get the Python codec of the filesystem encoding").
    made = subprocess.run(
        ["localedef", "-i", "zh_CN", "-f", "GBK", str(tmp_path / "zh_CN.GBK")],
        capture_output=True,
        timeout=120,
    )
    if made.returncode not in (0, 1) or not (tmp_path / "zh_CN.GBK").exists():  # 1: warnings only
        pytest.skip("localedef cannot make a zh_CN.GBK locale on this machine")
    env = {"PATH": "/usr/bin:/bin", "LOCPATH": str(tmp_path), "LC_ALL": "zh_CN.GBK"}
    proc = subprocess.run([str(binary), "--version"], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("midbox ")
