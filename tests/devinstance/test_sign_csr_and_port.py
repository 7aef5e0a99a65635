"""The development instance as the CA for an enrolment, and a URL that survives its restart."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from devinstance import cli
from tests.support.cli import run_cli

ROOT = Path(__file__).resolve().parents[2]


def test_sign_csr_issues_a_certificate_enroll_installs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inst, keys = tmp_path / "instance", tmp_path / "etc"
    monkeypatch.setenv("MIDBOX_STATE_DIR", str(tmp_path / "state"))
    code, _, err = run_cli("enroll", "--name", "edge-01", "--out", str(keys))
    assert code == 0, err
    crt = tmp_path / "appliance.crt"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli.main(["sign-csr", str(keys / "appliance.csr"), "--out", str(crt), "--dir", str(inst)]) == 0
    assert f"midbox enroll --install {crt} --ca-file {inst / 'pki' / 'ca.pem'}" in out.getvalue()
    ca = inst / "pki" / "ca.pem"
    code, _, err = run_cli("enroll", "--install", str(crt), "--ca-file", str(ca), "--out", str(keys))
    assert code == 0, err
    assert (keys / "appliance.crt").read_bytes() == crt.read_bytes()


def test_sign_csr_refuses_what_is_not_a_csr(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bogus = tmp_path / "x.csr"
    bogus.write_text("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n")
    assert cli.main(["sign-csr", str(bogus), "--out", str(tmp_path / "x.crt"), "--dir", str(tmp_path)]) == 1
    assert "midbox enroll" in capsys.readouterr().err and not (tmp_path / "x.crt").exists()


def _serve_once(directory: Path) -> str:
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT)}
    info = directory / "instance.json"
    info.unlink(missing_ok=True)
    proc = subprocess.Popen(
        [sys.executable, "-m", "devinstance", "serve", "--dir", str(directory), "--heartbeat-s", "0"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while not info.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        return str(json.loads(info.read_text())["url"])
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def test_a_restart_keeps_the_port(tmp_path: Path) -> None:
    first = _serve_once(tmp_path)
    assert (tmp_path / "port").read_text().strip() == first.rsplit(":", 1)[1]
    assert _serve_once(tmp_path) == first
