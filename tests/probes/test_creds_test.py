"""``midbox creds test`` against a real sshd: the login works, a wrong password does not, a target or
a command outside the policy is refused before any connection, and the attempt is audited, also while
the appliance runs and holds the audit log (through its audit inbox)."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from appliance.cli import main as midbox_main
from hardening.audit import Verdict, audit_dir, verify_log
from hardening.audit.inbox import inbox_dir
from hardening.known_hosts import KnownHosts, parse_public_key_file
from tests.daemons import SshServer
from tests.helpers import Pki, dev_instance
from tests.signing.helpers import write_signed_config
from tests.support.running import (
    EXPIRES,
    NOT_BEFORE,
    appliance,
    audit_entries,
    audit_events,
    config_bytes,
)

pytestmark = pytest.mark.daemons
ROOT = Path(__file__).resolve().parents[2]


def creds_add(state: Path, alias: str, user: str, secret: str) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "appliance", "creds", "add", alias, "--type", "ssh-password", "--user", user,
         "--state-dir", str(state)],
        env={"PYTHONPATH": str(ROOT), "PATH": os.environ.get("PATH", "")}, input=secret + "\n",
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr


def config(
    signed: tuple[Path, Ed25519PrivateKey],
    p: Pki,
    port: int,
    extra: str = "",
    url: str = "https://instance.example",
) -> Path:
    admin, key = signed
    body = config_bytes(url, p, 1, "443").split(b"[[allow]]")[0]
    body += f'[[allow]]\ncidr = "127.0.0.1/32"\nprobes = ["ssh"]\nports = [{port}]\ncredentials = ["pw", "bad"]\n{extra}'.encode()
    return write_signed_config(admin, [key], body, version=1, expires=EXPIRES, not_before=NOT_BEFORE)


def creds_test(
    monkeypatch: pytest.MonkeyPatch, cfg: Path, state: Path, *args: str
) -> tuple[int, dict[str, object]]:
    out = io.StringIO()
    monkeypatch.setattr("sys.stdout", out)
    code = midbox_main(["creds", "test", "--json", "--config", str(cfg), "--state-dir", str(state), *args])
    return code, json.loads(out.getvalue())


def test_creds_test_against_sshd(
    monkeypatch: pytest.MonkeyPatch, sshd: SshServer, state_dir: Path, dev_pki: Pki,
    signed: tuple[Path, Ed25519PrivateKey],
) -> None:  # fmt: skip
    creds_add(state_dir, "pw", sshd.user, sshd.password)
    creds_add(state_dir, "bad", sshd.user, "not-the-password")
    KnownHosts(state_dir / "known_hosts").pin(
        "127.0.0.1", sshd.port, parse_public_key_file(sshd.host_key_pub.read_bytes(), source="pub")
    )
    cfg = config(signed, dev_pki, sshd.port)
    code, doc = creds_test(monkeypatch, cfg, state_dir, "pw", "--target", f"127.0.0.1:{sshd.port}")
    assert code == 0 and doc["ok"] and doc["probe"] == "ssh", doc
    assert str(doc["audited"]).startswith("audited")
    code, doc = creds_test(monkeypatch, cfg, state_dir, "bad", "--target", f"127.0.0.1:{sshd.port}")
    assert code == 1 and "authentication" in str(doc["error"])
    code, doc = creds_test(monkeypatch, cfg, state_dir, "pw", "--target", "127.0.0.1:2")
    assert code == 1 and "denied" in str(doc["error"])
    # A rule whose commands do not list 'true' refuses the test, naming the rule.
    cfg = config(signed, dev_pki, sshd.port, 'commands = ["uname -a"]\n')
    code, doc = creds_test(monkeypatch, cfg, state_dir, "pw", "--target", f"127.0.0.1:{sshd.port}")
    assert code == 1 and "rule 1 (line" in str(doc["error"]) and "'true'" in str(doc["error"])


def test_creds_test_is_audited_while_the_appliance_runs(
    monkeypatch: pytest.MonkeyPatch, sshd: SshServer, state_dir: Path, dev_pki: Pki, tmp_path: Path,
    signed: tuple[Path, Ed25519PrivateKey],
) -> None:  # fmt: skip
    creds_add(state_dir, "pw", sshd.user, sshd.password)
    creds_add(state_dir, "bad", sshd.user, "not-the-password")
    KnownHosts(state_dir / "known_hosts").pin(
        "127.0.0.1", sshd.port, parse_public_key_file(sshd.host_key_pub.read_bytes(), source="pub")
    )
    with dev_instance(dev_pki, tmp_path / "db.sqlite") as instance:
        cfg = config(signed, dev_pki, sshd.port, url=instance.url)
        with appliance(cfg, state_dir, tmp_path / "run.log") as proc:
            deadline = time.monotonic() + 30
            while "appliance.start" not in audit_events(state_dir):
                assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "run.log").read_text()
                time.sleep(0.1)
            code, doc = creds_test(monkeypatch, cfg, state_dir, "pw", "--target", f"127.0.0.1:{sshd.port}")
            assert code == 0 and doc["ok"], doc
            assert str(doc["audited"]).startswith("audited") and "running appliance" in str(doc["audited"])
            code, doc = creds_test(monkeypatch, cfg, state_dir, "bad", "--target", f"127.0.0.1:{sshd.port}")
            assert code == 1 and str(doc["audited"]).startswith("audited"), doc
            # A forged file (an event no job produces) is refused, audited and removed; the appliance goes on.
            forged = inbox_dir(state_dir) / ("f" * 32 + ".json")
            forged.write_text('{"by": "x", "events": [["quarantine.off", {"reason": "r", "by": "x"}]]}')
            while forged.exists():
                assert proc.poll() is None and time.monotonic() < deadline + 30
                time.sleep(0.1)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0
    entries = audit_entries(state_dir)
    by_test = [e for e in entries if e["fields"].get("by") == "creds test"]
    assert [e["event"] for e in by_test if e["event"] in ("probe.started", "probe.finished")] == [
        "probe.started", "probe.finished", "probe.started", "probe.finished",
    ]  # fmt: skip
    attempts = [
        (e["fields"]["alias"], e["fields"]["outcome"]) for e in by_test if e["event"] == "credential.attempt"
    ]
    assert attempts == [("pw", "accepted"), ("bad", "rejected")]
    assert len({e["fields"]["inbox"] for e in by_test}) == 2  # one inbox file per test, each named
    events = [e["event"] for e in entries]
    # Recorded by the running appliance, between its start and its stop, in one unbroken chain.
    assert events.index("appliance.start") < entries.index(by_test[0]) < events.index("appliance.stop")
    assert [e["fields"]["inbox"] for e in entries if e["event"] == "audit.inbox_refused"] == ["f" * 32]
    assert "quarantine.off" not in events
    assert verify_log(audit_dir(state_dir), []).verdict is Verdict.INTACT
