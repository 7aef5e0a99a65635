"""The signing commands end to end, through ``python -m appliance`` as an admin and an appliance use them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.signing.helpers import config_toml
from tests.support.signing_cli import FAR, fails, midbox, ok


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    ws, state = tmp_path / "workstation", tmp_path / "state"
    ws.mkdir()
    (ws / "pass").write_text("correct horse battery\n")
    return ws, state


def test_keygen_sign_init_verify_explain(dirs: tuple[Path, Path]) -> None:
    ws, state = dirs
    ok("keygen", "--out", "keys", "--name", "alice", "--passphrase-file", "pass", cwd=ws)
    ok("keygen", "--out", "keys", "--name", "bob", "--no-passphrase", cwd=ws)
    assert (ws / "keys/alice.key").stat().st_mode & 0o777 == 0o600
    assert json.loads((ws / "keys/alice.key").read_text())["kdf"] == "scrypt"
    assert "exists" in fails(2, "keygen", "--out", "keys", "--name", "bob", "--no-passphrase", cwd=ws)
    msg = fails(2, "keygen", "--out", "keys", "--name", "carol", cwd=ws)
    assert "--passphrase-file" in msg  # no terminal, no prompt, nothing written
    assert not (ws / "keys/carol.key").exists()

    (ws / "midbox.toml").write_bytes(config_toml(version=3, expires=FAR))
    wrong = ws / "wrong"
    wrong.write_text("nope\n")
    assert "wrong passphrase" in fails(
        1, "config", "sign", "midbox.toml", "--key", "keys/alice.key", "--passphrase-file", wrong, cwd=ws
    )
    ok("config", "sign", "midbox.toml", "--key", "keys/alice.key", "--passphrase-file", "pass", cwd=ws)

    ok(
        "trust",
        "init",
        "--pubkey",
        "keys/alice.pub",
        "keys/bob.pub",
        "--threshold",
        "2",
        "--state-dir",
        state,
        cwd=ws,
    )
    assert "already installed" in fails(
        1, "trust", "init", "--pubkey", "keys/bob.pub", "--state-dir", state, cwd=ws
    )
    assert "the trust root needs 2" in fails(
        1, "config", "verify", "midbox.toml", "--state-dir", state, cwd=ws
    )
    out = ok("config", "sign", "midbox.toml", "--key", "keys/bob.key", cwd=ws)
    assert "holds 2 signature(s)" in out
    out = ok("config", "verify", "midbox.toml", "--state-dir", state, cwd=ws)
    assert "alice" in out and "bob" in out and "version: 3" in out and "127.0.0.0/8" in out
    info = json.loads(ok("config", "verify", "midbox.toml", "--json", "--state-dir", state, cwd=ws))
    assert info["version"] == 3 and len(info["signers"]) == 2 and info["allow"][0]["probes"] == ["ssh", "tcp"]
    # The SSH rule keys are shown with their defaults (no sudo, unknown host keys refused).
    assert info["allow"][0]["sudo"] is False and info["allow"][0]["host_keys"] == "pinned"
    assert "sudo false  host keys pinned" in out
    shown = json.loads(ok("trust", "show", "--json", "--state-dir", state, cwd=ws))
    assert shown["threshold"] == 2 and shown["config_version"] == 0  # verify never commits

    base = ("policy", "explain", "--config", "midbox.toml", "--state-dir", state)
    out = ok(*base, "--topic", "SSHCommand", "--target", "127.0.0.1", "--credential", "linux-ro", cwd=ws)
    assert out.startswith("ALLOW") and "rule 1" in out and "(sudo false, host keys pinned)" in out
    # A real probe names no alias: explain shows which the appliance would try, in order.
    out = ok(*base, "--topic", "SSHCommand", "--target", "127.0.0.1", cwd=ws)
    assert out.startswith("ALLOW") and "credentials tried, in order: linux-ro" in out
    r = midbox(*base, "--topic", "SSHCommand", "--target", "127.0.0.1", "--credential-tag", "linux", cwd=ws)
    assert r.returncode == 1 and "add it under [credential_map.tags]" in r.stdout
    r = midbox(*base, "--topic", "SNMP", "--target", "127.0.0.1", cwd=ws)
    assert r.returncode == 1 and r.stdout.startswith("DENY") and "not probe 'snmp'" in r.stdout
    r = midbox(*base, "--topic", "Shazzam", "--target", "127.0.0.1", "--port", "9000", cwd=ws)
    assert r.returncode == 1 and "not port 9000" in r.stdout

    (ws / "midbox.toml").write_bytes((ws / "midbox.toml").read_bytes().replace(b"8100", b"9100"))
    assert "changed after signing" in fails(
        1, "config", "verify", "midbox.toml", "--state-dir", state, cwd=ws
    )
    # Co-signing the edited file is refused with the fix; --replace starts a fresh signature set.
    assert "--replace" in fails(1, "config", "sign", "midbox.toml", "--key", "keys/bob.key", cwd=ws)
    out = ok("config", "sign", "midbox.toml", "--key", "keys/bob.key", "--replace", cwd=ws)
    assert "holds 1 signature(s)" in out
    out = ok("config", "sign", "midbox.toml", "--key", "keys/alice.key", "--passphrase-file", "pass", cwd=ws)
    assert "holds 2 signature(s)" in out
    ok("config", "verify", "midbox.toml", "--state-dir", state, cwd=ws)


def test_rotation_through_the_cli(dirs: tuple[Path, Path]) -> None:
    ws, state = dirs
    for name in ("alice", "bob", "carol"):
        ok("keygen", "--out", "keys", "--name", name, "--no-passphrase", cwd=ws)
    ok(
        "trust",
        "init",
        "--pubkey",
        "keys/alice.pub",
        "keys/bob.pub",
        "--threshold",
        "2",
        "--state-dir",
        state,
        cwd=ws,
    )
    (ws / "current.json").write_bytes((state / "trust.json").read_bytes())
    ok(
        "trust",
        "propose",
        "--current",
        "current.json",
        "--pubkey",
        "keys/bob.pub",
        "keys/carol.pub",
        "--threshold",
        "2",
        "--out",
        "new.json",
        cwd=ws,
    )
    ok("trust", "sign-root", "new.json", "--key", "keys/carol.key", cwd=ws)  # a new key does not count
    ok("trust", "sign-root", "new.json", "--key", "keys/alice.key", cwd=ws)
    msg = fails(1, "trust", "rotate", "new.json", "--state-dir", state, cwd=ws)
    assert "rotation refused: 1 valid signature(s) from current keys" in msg
    ok("trust", "sign-root", "new.json", "--key", "keys/bob.key", cwd=ws)
    out = ok("trust", "rotate", "new.json", "--state-dir", state, cwd=ws)
    assert "v1 -> v2" in out
    shown = json.loads(ok("trust", "show", "--json", "--state-dir", state, cwd=ws))
    assert {k["name"] for k in shown["keys"]} == {"bob", "carol"} and len(shown["retired"]) == 1

    (ws / "midbox.toml").write_bytes(config_toml(version=1, expires=FAR))
    ok("config", "sign", "midbox.toml", "--key", "keys/alice.key", cwd=ws)
    ok("config", "sign", "midbox.toml", "--key", "keys/bob.key", cwd=ws)
    assert "needs 2" in fails(1, "config", "verify", "midbox.toml", "--state-dir", state, cwd=ws)

    # An attacker with the disk puts the old root back: the pin catches it.
    (state / "trust.json").write_bytes((ws / "current.json").read_bytes())
    assert "does not match the pinned" in fails(1, "trust", "show", "--state-dir", state, cwd=ws)


def test_verify_against_an_explicit_trust_file(dirs: tuple[Path, Path]) -> None:
    ws, state = dirs
    ok("keygen", "--out", "keys", "--name", "alice", "--no-passphrase", cwd=ws)
    ok("trust", "init", "--pubkey", "keys/alice.pub", "--state-dir", state, cwd=ws)
    (ws / "midbox.toml").write_bytes(config_toml(version=1, expires=FAR))
    assert "unsigned" in fails(
        1,
        "config",
        "verify",
        "midbox.toml",
        "--trust",
        state / "trust.json",
        "--state-dir",
        ws / "none",
        cwd=ws,
    )
    ok("config", "sign", "midbox.toml", "--key", "keys/alice.key", cwd=ws)
    out = ok(
        "config", "verify", "midbox.toml", "--trust", state / "trust.json", "--state-dir", ws / "none", cwd=ws
    )
    assert out.startswith("OK")
