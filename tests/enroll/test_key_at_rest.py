"""The mTLS key at rest: encrypted under the host key; a plaintext key still works, doctor warns, and
``midbox enroll --encrypt-key`` converts it in one command."""

from __future__ import annotations

import io
import json
import os
import shutil
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from appliance.cli import main as midbox_main
from devinstance import pki
from hardening.tls import TLSConfigError, client_context
from tests.enroll.helpers import NAME, password_of, pem, sign
from tests.helpers import Pki, dev_instance
from tests.signing.helpers import install_trust
from tests.support.cli import run_cli
from tests.support.running import config_bytes, signed_config


def _doctor(
    monkeypatch: pytest.MonkeyPatch, config: Path, state_dir: Path
) -> tuple[int, dict[str, dict[str, str]]]:
    out = io.StringIO()
    monkeypatch.setattr("sys.stdout", out)
    code = midbox_main(["doctor", "--json", "--config", str(config), "--state-dir", str(state_dir)])
    monkeypatch.undo()
    return code, {f["check"]: f for f in map(json.loads, out.getvalue().splitlines())}


def test_a_plaintext_key_works_is_warned_about_and_migrates_in_one_command(
    monkeypatch: pytest.MonkeyPatch, dev_pki: Pki, tmp_path: Path, state_dir: Path
) -> None:
    etc = tmp_path / "etc"
    etc.mkdir()
    key, cert = etc / "appliance.key", etc / "appliance.crt"
    shutil.copyfile(dev_pki.client.key, key)
    shutil.copyfile(dev_pki.client.cert, cert)
    os.chmod(key, 0o600)
    admin = Ed25519PrivateKey.generate()
    install_trust(state_dir, [admin])
    p = Pki(dev_pki.directory, dev_pki.ca, dev_pki.server, pki.Issued(cert, key))
    with dev_instance(dev_pki, tmp_path / "db.sqlite") as instance:
        config = signed_config(tmp_path / "admin", [admin], config_bytes(instance.url, p, 1, "443"))
        code, found = _doctor(monkeypatch, config, state_dir)
        assert found["client key"]["level"] == "WARN", found
        fix = f"midbox enroll --encrypt-key --config {config}"
        assert "unencrypted" in found["client key"]["detail"] and fix in found["client key"]["detail"]
        assert found["instance"]["level"] == "ok"  # the plaintext key still works
        r = run_cli("enroll", "--encrypt-key", "--config", str(config), "--state-dir", str(state_dir))
        assert r.code == 0, r.err
        assert f"{key}: now encrypted" in r.out
        assert b"ENCRYPTED PRIVATE KEY" in key.read_bytes() and stat.S_IMODE(key.stat().st_mode) == 0o600
        code, found = _doctor(monkeypatch, config, state_dir)
        assert found["client key"]["level"] == "ok", found["client key"]
        assert found["instance"]["level"] == "ok", found["instance"]  # mTLS with the encrypted key
        assert code == 0, found
        again = run_cli("enroll", "--encrypt-key", "--config", str(config), "--state-dir", str(state_dir))
        assert again.code == 0 and "already encrypted" in again.out


@pytest.mark.usefixtures("enrolled")
def test_the_key_is_useless_without_its_host_key(
    monkeypatch: pytest.MonkeyPatch, etc: Path, state_dir: Path, tmp_path: Path, dev_pki: Pki
) -> None:
    from tests.enroll.helpers import load_ca

    ca = load_ca(dev_pki.ca.cert, dev_pki.ca.key)
    signed = tmp_path / "signed.crt"
    signed.write_bytes(pem(sign(etc / "appliance.csr", ca)))
    r = run_cli(
        "enroll",
        "--install",
        str(signed),
        "--ca-file",
        str(dev_pki.ca.cert),
        "--out",
        str(etc),
        "--state-dir",
        str(state_dir),
    )
    assert r.code == 0, r.err
    paths = {
        "ca_file": dev_pki.ca.cert,
        "client_cert": etc / "appliance.crt",
        "client_key": etc / "appliance.key",
    }
    client_context(**paths, name=NAME, key_password=password_of(state_dir))  # its own host key opens it
    other = tmp_path / "other-state"
    other.mkdir(mode=0o700)
    run_cli("enroll", "--name", NAME, "--out", str(tmp_path / "other-etc"), "--state-dir", str(other))
    with pytest.raises(TLSConfigError, match="another host's key"):
        client_context(**paths, name=NAME, key_password=password_of(other))
    with pytest.raises(TLSConfigError, match="encrypted"):
        client_context(**paths, name=NAME)  # never a prompt on the terminal
