"""``midbox creds test`` against a real sshd: the login works, a wrong password does not, a target or
a command outside the policy is refused before any connection, and the attempt is audited."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from appliance.cli import main as midbox_main
from hardening.known_hosts import KnownHosts, parse_public_key_file
from tests.daemons import SshServer
from tests.helpers import Pki
from tests.signing.helpers import write_signed_config
from tests.support.running import EXPIRES, NOT_BEFORE, config_bytes

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


def config(signed: tuple[Path, Ed25519PrivateKey], p: Pki, port: int, extra: str = "") -> Path:
    admin, key = signed
    body = config_bytes("https://instance.example", p, 1, "443").split(b"[[allow]]")[0]
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
