"""The audit commands as a user runs them: python -m appliance audit ... --state-dir DIR."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from hardening.audit import AuditOptions
from hardening.audit._files import log_files
from tests.support.cli import run_process

from .conftest import probe_fields, write_log


def midbox(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return run_process(*args, env={k: v for k, v in os.environ.items() if k != "MIDBOX_STATE_DIR"})


def test_verify_checkpoint_and_detect_tampering(state: Path, tmp_path: Path) -> None:
    write_log(state, 10).close()
    ok = midbox("audit", "verify", "--state-dir", state)
    assert ok.returncode == 0 and ok.stdout.startswith("INTACT: 11 entries"), ok.stderr

    cp, pub = tmp_path / "cp.xml", tmp_path / "audit.pub"
    made = midbox("audit", "checkpoint", "--out", cp, "--state-dir", state)
    assert made.returncode == 0, made.stderr
    assert midbox("audit", "pubkey", "--out", pub, "--state-dir", state).returncode == 0
    good = midbox("audit", "verify", "--checkpoint", cp, "--pubkey", pub, "--state-dir", state, "--json")
    assert good.returncode == 0 and json.loads(good.stdout)["verdict"] == "INTACT"

    path = log_files(state / "audit")[0][1]
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:6]))
    cut = midbox("audit", "verify", "--checkpoint", cp, "--pubkey", pub, "--state-dir", state)
    assert cut.returncode == 1 and cut.stdout.startswith("TRUNCATED at seq 6:"), cut.stdout

    path.write_bytes(b"".join([*lines[:3], lines[3].replace(b"job0002", b"job9999"), *lines[4:]]))
    edited = midbox("audit", "verify", "--state-dir", state)
    assert edited.returncode == 1 and edited.stdout.startswith("TAMPERED at seq 3:"), edited.stdout
    refused = midbox("audit", "checkpoint", "--out", tmp_path / "cp2.xml", "--state-dir", state)
    assert refused.returncode == 1 and "refusing to sign" in refused.stderr
    assert not (tmp_path / "cp2.xml").exists()


def test_deleted_log_against_exported_checkpoint(state: Path, tmp_path: Path) -> None:
    write_log(state, 3).close()
    cp = tmp_path / "cp.xml"
    assert midbox("audit", "checkpoint", "--out", cp, "--state-dir", state).returncode == 0
    for _, path in log_files(state / "audit"):
        path.unlink()
    gone = midbox("audit", "verify", "--checkpoint", cp, "--state-dir", state)
    assert gone.returncode == 1 and gone.stdout.startswith("TRUNCATED at seq 0:"), gone.stdout


def test_forged_checkpoint_is_one_line_error(state: Path, tmp_path: Path) -> None:
    write_log(state, 3).close()
    cp = tmp_path / "cp.xml"
    assert midbox("audit", "checkpoint", "--out", cp, "--state-dir", state).returncode == 0
    pub = tmp_path / "audit.pub"
    assert midbox("audit", "pubkey", "--out", pub, "--state-dir", state).returncode == 0
    cp.write_bytes(cp.read_bytes().replace(b'size="4"', b'size="3"'))
    bad = midbox("audit", "verify", "--checkpoint", cp, "--pubkey", pub, "--state-dir", state)
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "does not verify" in bad.stderr


def test_show_table_and_json(state: Path) -> None:
    audit = write_log(state, 3)
    audit.record("target.denied", {**probe_fields(7), "reason": "no rule"})
    audit.close()
    table = midbox("audit", "show", "--state-dir", state)
    assert table.returncode == 0, table.stderr
    rows = table.stdout.splitlines()
    assert rows[0].startswith("TIME (UTC)") and len(rows) == 5 and "denied: no rule" in rows[4]
    wide = midbox("audit", "show", "--wide", "--state-dir", state)
    assert wide.returncode == 0 and len(wide.stdout.splitlines()) == 5 and "~" not in wide.stdout
    js = midbox("audit", "show", "--json", "--target", "10.0.0.8", "--state-dir", state)
    assert [json.loads(r)["job"] for r in js.stdout.splitlines()] == ["job0007"]
    bad = midbox("audit", "show", "--since", "someday", "--state-dir", state)
    assert bad.returncode == 2 and "--since" in bad.stderr


def test_seal_export_and_verify(state: Path, tmp_path: Path) -> None:
    write_log(state, 25, AuditOptions(seal=True, seal_every_entries=10)).close()
    key = tmp_path / "seal.txt"
    out = midbox("audit", "seal-export", "--out", key, "--state-dir", state)
    assert out.returncode == 0, out.stderr
    again = midbox("audit", "seal-export", "--state-dir", state)
    assert again.returncode == 1 and "exported already" in again.stderr
    ok = midbox("audit", "verify", "--seal-key", key, "--state-dir", state, "--json")
    assert ok.returncode == 0 and json.loads(ok.stdout)["sealed"] == 28, ok.stdout
    path = log_files(state / "audit")[0][1]
    path.write_bytes(path.read_bytes().replace(b"job0003", b"job0666"))
    bad = midbox("audit", "verify", "--seal-key", key, "--state-dir", state)
    assert bad.returncode == 1 and bad.stdout.startswith("TAMPERED at seq 4:"), bad.stdout


def test_usage_errors_exit_2(state: Path) -> None:
    assert midbox("audit", "checkpoint", "--state-dir", state).returncode == 2
    assert midbox("audit", "--state-dir", state).returncode == 2


def test_a_torn_last_line_fails_verify(state: Path) -> None:
    write_log(state, 5).close()
    path = log_files(state / "audit")[0][1]
    path.write_bytes(path.read_bytes()[:-20])  # the last entry cut mid-line
    torn = midbox("audit", "verify", "--state-dir", state)
    assert torn.returncode == 1, torn.stdout
    assert "torn" in torn.stderr and "may have been cut" in torn.stderr
