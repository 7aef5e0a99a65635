"""``midbox doctor`` on a healthy host, and on each thing that commonly goes wrong."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from appliance.config.pinning import pin_files
from tests.helpers import Pki, dev_instance
from tests.signing.helpers import write_signed_config
from tests.support.doctor import doctor, signed_config
from tests.support.running import EXPIRES, NOT_BEFORE, config_bytes


def test_a_healthy_appliance_passes_every_check(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    state_dir: Path,
    dev_pki: Pki,
    signed: tuple[Path, Ed25519PrivateKey],
) -> None:
    with dev_instance(dev_pki, tmp_path / "db.sqlite") as instance:
        config = signed_config(signed, instance.url, dev_pki)
        code, found = doctor("--config", str(config), "--state-dir", str(state_dir))
    assert code == 0, found
    for check in (
        "state dir",
        "trust root",
        "config",
        "instance CA",
        "client certificate",
        "instance",
        "clock",
    ):
        assert found[check]["level"] == "ok", found[check]
    assert "file pins" not in found  # every file the config names is pinned


def test_a_swapped_ca_file_fails_the_config_check(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    state_dir: Path,
    dev_pki: Pki,
    signed: tuple[Path, Ed25519PrivateKey],
) -> None:
    """Issue 13 item 6: the signature covered the config, not the CA file it names."""
    admin, key = signed
    admin.mkdir()
    own_ca = tmp_path / "instance-ca.pem"
    own_ca.write_bytes(dev_pki.ca.cert.read_bytes())
    data = config_bytes("https://localhost:1", dev_pki, 1, "443").replace(
        str(dev_pki.ca.cert).encode(), b"../instance-ca.pem"
    )
    config = write_signed_config(
        admin,
        [key],
        pin_files(data, admin / "midbox.toml").data,
        version=1,
        expires=EXPIRES,
        not_before=NOT_BEFORE,
    )
    own_ca.write_bytes(dev_pki.ca.cert.read_bytes() + b"\n")  # any other bytes: another CA
    code, found = doctor("--config", str(config), "--state-dir", str(state_dir))
    assert code == 1
    assert found["config"]["level"] == "FAIL"
    assert "not the file that was signed" in found["config"]["detail"]
    assert "midbox config sign --replace" in found["config"]["detail"]


def test_unpinned_files_are_a_warning(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    state_dir: Path,
    dev_pki: Pki,
    signed: tuple[Path, Ed25519PrivateKey],
) -> None:
    admin, key = signed
    data = config_bytes("https://localhost:1", dev_pki, 1, "443")
    config = write_signed_config(admin, [key], data, version=1, expires=EXPIRES, not_before=NOT_BEFORE)
    _, found = doctor("--config", str(config), "--state-dir", str(state_dir))
    assert found["config"]["level"] == "ok"
    assert found["file pins"]["level"] == "WARN"
    assert "midbox config sign --replace" in found["file pins"]["detail"]


def test_a_loose_state_dir_names_the_chmod(
    monkeypatch: pytest.MonkeyPatch, state_dir: Path, signed: object
) -> None:
    os.chmod(state_dir, 0o755)
    code, found = doctor("--state-dir", str(state_dir))
    assert code == 1
    assert found["state dir"]["level"] == "FAIL" and "chmod 700" in found["state dir"]["detail"]


def test_an_instance_that_is_down_exits_3(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    state_dir: Path,
    dev_pki: Pki,
    signed: tuple[Path, Ed25519PrivateKey],
) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"https://127.0.0.1:{s.getsockname()[1]}"
    config = signed_config(signed, dead, dev_pki)
    code, found = doctor("--config", str(config), "--state-dir", str(state_dir))
    assert code == 3
    assert found["instance"]["level"] == "FAIL" and "refused the connection" in found["instance"]["detail"]


def test_a_tampered_config_fails_and_the_instance_is_not_contacted(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    state_dir: Path,
    dev_pki: Pki,
    signed: tuple[Path, Ed25519PrivateKey],
) -> None:
    config = signed_config(signed, "https://127.0.0.1:9", dev_pki)
    config.write_bytes(config.read_bytes().replace(b'"443"', b'"1-65535"').replace(b"443", b"1-65535"))
    code, found = doctor("--config", str(config), "--state-dir", str(state_dir))
    assert code == 1 and found["config"]["level"] == "FAIL"
    assert "instance" not in found
