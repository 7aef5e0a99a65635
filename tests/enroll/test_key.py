"""``midbox enroll --name NAME --out DIR`` and ``--renew``: the key is made here, private, never shown."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from appliance.config import parse as config_parse
from hardening.enroll.store import NAME_RE
from tests.enroll.helpers import AGENT, NAME, load_key
from tests.support.cli import Result, run_cli

posix_only = pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@posix_only
def test_key_is_private_and_csr_names_the_agent(enrolled: Result, etc: Path, state_dir: Path) -> None:
    key, csr_path = etc / "appliance.key", etc / "appliance.csr"
    assert _mode(etc) == 0o700 and _mode(key) == 0o600 and _mode(csr_path) == 0o644
    assert not (etc / "appliance.crt").exists()
    csr = x509.load_pem_x509_csr(csr_path.read_bytes())
    assert csr.is_signature_valid
    assert [a.value for a in csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)] == [AGENT]
    san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == [AGENT]
    eku = csr.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    private = load_key(key, state_dir)  # encrypted at rest under the host key
    assert private.public_key() == csr.public_key()
    # The output names the CSR and its fingerprint, and never the key's contents.
    assert str(csr_path) in enrolled.out
    assert hashlib.sha256(csr.public_bytes(serialization.Encoding.DER)).hexdigest() in enrolled.out
    body = b"".join(key.read_bytes().splitlines()[1:-1]).decode()
    for text in (enrolled.out, enrolled.err):
        assert "PRIVATE KEY" not in text and body[:24] not in text


def test_existing_key_is_never_overwritten_without_force(
    monkeypatch: pytest.MonkeyPatch, enrolled: Result, etc: Path, state_dir: Path
) -> None:
    key = etc / "appliance.key"
    before = key.read_bytes()
    args = ("enroll", "--name", NAME, "--out", str(etc), "--state-dir", str(state_dir))
    r = run_cli(*args)
    assert r.code == 1 and "never overwritten" in r.err and "--force" in r.err
    assert key.read_bytes() == before
    r = run_cli(*args, "--force")
    assert r.code == 0, r.err
    assert key.read_bytes() != before


@pytest.mark.parametrize("name", ["", "-lead", "has space", "a/b", "x" * 65, "é", "edge-01\n"])
def test_bad_names_are_usage_errors(
    monkeypatch: pytest.MonkeyPatch, etc: Path, state_dir: Path, name: str
) -> None:
    r = run_cli("enroll", f"--name={name}", "--out", str(etc), "--state-dir", str(state_dir))
    assert r.code == 2 and "appliance name" in r.err
    assert not (etc / "appliance.key").exists()


def test_name_rule_is_the_configs() -> None:
    samples = ["edge-01", "a", "A.b_c-9", "x" * 64, "x" * 65, "", "-x", ".x", "a b", "a/b", "é", "a\n", "0"]
    config_rule = config_parse._NAME
    for s in samples:
        assert bool(NAME_RE.fullmatch(s)) == bool(config_rule.fullmatch(s)), s


@posix_only
def test_directory_others_can_write_is_refused(
    monkeypatch: pytest.MonkeyPatch, etc: Path, state_dir: Path
) -> None:
    etc.mkdir()
    os.chmod(etc, 0o770)
    r = run_cli("enroll", "--name", NAME, "--out", str(etc), "--state-dir", str(state_dir))
    assert r.code == 1 and "chmod go-w" in r.err
    assert not (etc / "appliance.key").exists()


@pytest.mark.skipif(os.name != "posix" or os.geteuid() != 0, reason="needs root to give a directory a group")
def test_key_is_readable_by_the_directorys_service_group(
    monkeypatch: pytest.MonkeyPatch, etc: Path, state_dir: Path
) -> None:
    # As /etc/midbox after install.sh: root:midbox 0750; the service runs as midbox and must read the key.
    etc.mkdir()
    os.chown(etc, -1, 65534)
    os.chmod(etc, 0o750)
    r = run_cli("enroll", "--name", NAME, "--out", str(etc), "--state-dir", str(state_dir))
    assert r.code == 0, r.err
    st = os.stat(etc / "appliance.key")
    assert stat.S_IMODE(st.st_mode) == 0o640 and st.st_gid == 65534 and st.st_uid == 0


def test_renew_needs_an_enrollment(monkeypatch: pytest.MonkeyPatch, etc: Path, state_dir: Path) -> None:
    r = run_cli("enroll", "--renew", "--out", str(etc), "--state-dir", str(state_dir))
    assert r.code == 1 and "midbox enroll --name NAME" in r.err


def test_ca_file_without_install_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, etc: Path, state_dir: Path
) -> None:
    r = run_cli(
        "enroll",
        "--name",
        NAME,
        "--out",
        str(etc),
        "--ca-file",
        "x",
        "--state-dir",
        str(state_dir),
    )
    assert r.code == 2
