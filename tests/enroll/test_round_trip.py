"""Enroll, sign, install, then real mutual TLS with the files; renewal; an interrupted swap; audit; config paths."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from appliance.limits import MAX_INSTANCE_RESPONSE_BYTES
from appliance.queue.client import EccClient
from appliance.queue.transport import instance_client
from devinstance import pki
from hardening.audit import open_audit_log, verify_log
from hardening.audit._files import audit_dir, log_files
from hardening.enroll.store import EnrollPaths, finish_interrupted_swap
from hardening.tls import TLSConfigError
from tests.enroll.helpers import AGENT, CA, NAME, load_ca, load_key, password_of, pem, sign
from tests.helpers import Pki, config_text, dev_instance, fast_limits, trusted
from tests.signing.helpers import install_trust, write_signed_config
from tests.support.cli import run_cli


def _poll(url: str, p: Pki, etc: Path, tmp_path: Path, state_dir: Path) -> None:
    """One ECC poll over the appliance's own TLS client, built from the enrolled files."""
    enrolled = Pki(p.directory, p.ca, p.server, pki.Issued(etc / "appliance.crt", etc / "appliance.key"))
    config = trusted(config_text(url, enrolled), tmp_path / "c.toml")

    async def go() -> None:
        client = EccClient(
            instance_client(
                config.instance,
                fast_limits(),
                name=config.appliance.name,
                key_password=password_of(state_dir),
            ),
            name=NAME,
            max_response_bytes=MAX_INSTANCE_RESPONSE_BYTES,
        )
        try:
            await client.poll(1)
        finally:
            await client.aclose()

    asyncio.run(go())


def _sign_and_install(
    monkeypatch: pytest.MonkeyPatch, csr: Path, ca: CA, ca_file: Path, etc: Path, state_dir: Path
) -> x509.Certificate:
    cert = sign(csr, ca)
    signed = etc.parent / f"signed-{cert.serial_number}.crt"
    signed.write_bytes(pem(cert))
    r = run_cli(
        "enroll",
        "--install",
        str(signed),
        "--ca-file",
        str(ca_file),
        "--out",
        str(etc),
        "--state-dir",
        str(state_dir),
    )
    assert r.code == 0, r.err
    return cert


def _pair_matches(etc: Path, state_dir: Path) -> bool:
    key = load_key(etc / "appliance.key", state_dir)
    cert = x509.load_pem_x509_certificate((etc / "appliance.crt").read_bytes())
    return key.public_key() == cert.public_key()


@pytest.fixture
def dev_ca(dev_pki: Pki) -> CA:
    return load_ca(dev_pki.ca.cert, dev_pki.ca.key)


@pytest.mark.usefixtures("enrolled")
def test_enrolled_files_complete_mutual_tls_with_the_instance(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, etc: Path, state_dir: Path, dev_pki: Pki, dev_ca: CA
) -> None:
    with dev_instance(dev_pki, tmp_path / "db.sqlite") as instance:
        with pytest.raises(TLSConfigError, match="client certificate"):
            _poll(
                instance.url, dev_pki, etc, tmp_path, state_dir
            )  # control: no certificate yet, no connection
        _sign_and_install(monkeypatch, etc / "appliance.csr", dev_ca, dev_pki.ca.cert, etc, state_dir)
        _poll(instance.url, dev_pki, etc, tmp_path, state_dir)
        # The instance saw our certificate (CN mid.server.edge-01) and counts it as cluster member edge-01.
        assert AGENT.removeprefix("mid.server.") in instance.state.last_seen


@pytest.mark.usefixtures("enrolled")
def test_renewal_keeps_the_current_pair_until_the_swap(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, etc: Path, state_dir: Path, dev_pki: Pki, dev_ca: CA
) -> None:
    first = _sign_and_install(monkeypatch, etc / "appliance.csr", dev_ca, dev_pki.ca.cert, etc, state_dir)
    old_key, old_cert, old_csr = ((etc / f"appliance.{s}").read_bytes() for s in ("key", "crt", "csr"))
    r = run_cli("enroll", "--renew", "--out", str(etc), "--state-dir", str(state_dir))
    assert r.code == 0, r.err
    assert "appliance.next.csr" in r.out and "stay in force" in r.out
    assert (etc / "appliance.key").read_bytes() == old_key and (
        etc / "appliance.crt"
    ).read_bytes() == old_cert
    next_key = (etc / "appliance.next.key").read_bytes()
    with dev_instance(dev_pki, tmp_path / "db.sqlite") as instance:
        _poll(instance.url, dev_pki, etc, tmp_path, state_dir)  # the current pair still works mid-renewal
        # A second --renew would discard the pending key: refused without --force.
        again = run_cli("enroll", "--renew", "--out", str(etc), "--state-dir", str(state_dir))
        assert again.code == 1 and "already pending" in again.err
        # A certificate for the old key is not the renewal's.
        stale = etc.parent / "stale.crt"
        stale.write_bytes(pem(sign(etc / "appliance.csr", dev_ca)))
        r = run_cli(
            "enroll",
            "--install",
            str(stale),
            "--ca-file",
            str(dev_pki.ca.cert),
            "--out",
            str(etc),
            "--state-dir",
            str(state_dir),
        )
        assert r.code == 1 and "check 2/6" in r.err
        renewed = _sign_and_install(
            monkeypatch, etc / "appliance.next.csr", dev_ca, dev_pki.ca.cert, etc, state_dir
        )
        assert (etc / "appliance.key").read_bytes() == next_key
        assert x509.load_pem_x509_certificate((etc / "appliance.crt").read_bytes()) == renewed != first
        assert sorted(p.name for p in etc.iterdir()) == ["appliance.crt", "appliance.csr", "appliance.key"]
        assert (etc / "appliance.csr").read_bytes() != old_csr
        if os.name == "posix":
            assert (os.stat(etc / "appliance.key").st_mode & 0o777) == 0o600
        _poll(instance.url, dev_pki, etc, tmp_path, state_dir)  # the renewed pair works


@pytest.mark.usefixtures("enrolled")
@pytest.mark.parametrize("crash_after", ["staging", "key_rename"])
def test_an_interrupted_swap_is_finished_by_the_next_run(
    monkeypatch: pytest.MonkeyPatch, etc: Path, state_dir: Path, client_ca: CA, crash_after: str
) -> None:
    _sign_and_install(
        monkeypatch, etc / "appliance.csr", client_ca, client_ca.write(etc.parent / "ca.pem"), etc, state_dir
    )
    assert run_cli("enroll", "--renew", "--out", str(etc), "--state-dir", str(state_dir)).code == 0
    paths = EnrollPaths.in_dir(etc, password_of(state_dir))
    renewed = sign(paths.next_csr, client_ca)
    # What install() does before a crash: stage the verified certificate, maybe move the key.
    paths.staged_cert.write_bytes(pem(renewed))
    if crash_after == "key_rename":
        os.replace(paths.next_key, paths.key)
    assert _pair_matches(etc, state_dir) is (
        crash_after == "staging"
    )  # after the key moved, a crash leaves a mismatch
    r = run_cli("enroll", "--renew", "--out", str(etc), "--state-dir", str(state_dir))
    assert r.code == 0, r.err
    assert "interrupted renewal was completed" in r.err
    assert (
        _pair_matches(etc, state_dir) and x509.load_pem_x509_certificate(paths.cert.read_bytes()) == renewed
    )
    assert not paths.staged_cert.exists()
    assert finish_interrupted_swap(paths) is None  # idempotent: nothing left to do


def test_a_staged_certificate_for_no_key_is_removed(
    etc: Path, enrolled: object, client_ca: CA, state_dir: Path
) -> None:
    paths = EnrollPaths.in_dir(etc, password_of(state_dir))
    stray = sign(paths.csr, client_ca, public_key=client_ca.key.public_key())
    paths.staged_cert.write_bytes(pem(stray))
    assert "matched no key" in (finish_interrupted_swap(paths) or "")
    assert not paths.staged_cert.exists() and not paths.cert.exists()


def test_audit_log_gets_fingerprints_only(
    monkeypatch: pytest.MonkeyPatch, etc: Path, state_dir: Path, client_ca: CA
) -> None:
    open_audit_log(state_dir).close()  # the state dir of an appliance that has run once
    r = run_cli("enroll", "--name", NAME, "--out", str(etc), "--state-dir", str(state_dir), "--json")
    assert r.code == 0, r.err
    made = json.loads(r.out)
    assert made["audited"] is True
    cert = _sign_and_install(
        monkeypatch, etc / "appliance.csr", client_ca, client_ca.write(etc.parent / "ca.pem"), etc, state_dir
    )
    entries = [
        json.loads(line) for _, f in log_files(audit_dir(state_dir)) for line in f.read_text().splitlines()
    ]
    by_event = {e["event"]: e["fields"] for e in entries}
    assert by_event["enroll.key_created"]["key_sha256"] == made["key_sha256"]
    assert by_event["enroll.key_created"]["csr_sha256"] == made["csr_sha256"]
    assert by_event["enroll.cert_installed"]["cert_sha256"] == cert.fingerprint(hashes.SHA256()).hex()
    key_body = b"".join((etc / "appliance.key").read_bytes().splitlines()[1:-1]).decode()
    text = "".join(f.read_text() for _, f in log_files(audit_dir(state_dir)))
    assert "PRIVATE" not in text and key_body[:24] not in text
    assert verify_log(audit_dir(state_dir)).ok


def test_paths_and_ca_come_from_the_signed_config(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, state_dir: Path, client_ca: CA
) -> None:
    admin = Ed25519PrivateKey.generate()
    install_trust(state_dir, [admin])
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    etc = tmp_path / "cfg"
    etc.mkdir(mode=0o700)
    client_ca.write(etc / "ca.pem")
    text = f"""version = 1
expires = {(now + dt.timedelta(days=30)):%Y-%m-%dT%H:%M:%SZ}

[appliance]
name = "{NAME}"

[instance]
url = "https://127.0.0.1:9"
ca_file = "ca.pem"
client_cert = "appliance.crt"
client_key = "appliance.key"
"""
    config = write_signed_config(
        etc,
        [admin],
        text.encode(),
        version=1,
        expires=now + dt.timedelta(days=30),
        not_before=now - dt.timedelta(hours=1),
    )
    common = ("--config", str(config), "--state-dir", str(state_dir))
    wrong = run_cli("enroll", "--name", "edge-02", *common)
    assert wrong.code == 2 and "edge-01" in wrong.err
    assert run_cli("enroll", "--name", NAME, *common).code == 0
    signed = tmp_path / "signed.crt"
    signed.write_bytes(pem(sign(etc / "appliance.csr", client_ca)))
    r = run_cli("enroll", "--install", str(signed), *common)  # the chain is checked to ca.pem
    assert r.code == 0, r.err
    settings = trusted(text, config).instance
    assert settings.client_key == etc / "appliance.key" and settings.client_cert == etc / "appliance.crt"
    assert _pair_matches(etc, state_dir)


@pytest.mark.usefixtures("enrolled")
def test_doctor_points_at_enroll_renew(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, etc: Path, state_dir: Path, dev_pki: Pki, client_ca: CA
) -> None:
    from appliance.doctor import Level, check_certificates

    cert = sign(etc / "appliance.csr", client_ca, not_after=dt.timedelta(days=5))
    (etc / "appliance.crt").write_bytes(pem(cert))
    enrolled = Pki(
        dev_pki.directory,
        dev_pki.ca,
        dev_pki.server,
        pki.Issued(etc / "appliance.crt", etc / "appliance.key"),
    )
    config = trusted(config_text("https://127.0.0.1:9", enrolled), tmp_path / "c.toml")
    found = {f.check: f for f in check_certificates(config, dt.datetime.now(dt.UTC))}
    assert found["client certificate"].level is Level.WARN
    assert "midbox enroll --renew" in found["client certificate"].detail
    assert "enroll" not in found["instance CA"].detail


@pytest.mark.usefixtures("enrolled")
def test_renewal_takes_the_name_from_the_certificate_when_no_csr_was_kept(
    monkeypatch: pytest.MonkeyPatch, etc: Path, state_dir: Path, client_ca: CA
) -> None:
    _sign_and_install(
        monkeypatch, etc / "appliance.csr", client_ca, client_ca.write(etc.parent / "ca.pem"), etc, state_dir
    )
    (etc / "appliance.csr").unlink()
    r = run_cli("enroll", "--renew", "--out", str(etc), "--state-dir", str(state_dir), "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["subject"] == f"CN={AGENT}"


@pytest.mark.usefixtures("enrolled")
def test_starting_over_with_force_drops_a_pending_renewal(
    monkeypatch: pytest.MonkeyPatch, etc: Path, state_dir: Path, client_ca: CA
) -> None:
    _sign_and_install(
        monkeypatch, etc / "appliance.csr", client_ca, client_ca.write(etc.parent / "ca.pem"), etc, state_dir
    )
    assert run_cli("enroll", "--renew", "--out", str(etc), "--state-dir", str(state_dir)).code == 0
    r = run_cli("enroll", "--name", NAME, "--force", "--out", str(etc), "--state-dir", str(state_dir))
    assert r.code == 0, r.err
    assert not (etc / "appliance.next.key").exists() and not (etc / "appliance.next.csr").exists()
    # The new key's certificate installs as a first enrollment, not as the dropped renewal.
    _sign_and_install(monkeypatch, etc / "appliance.csr", client_ca, etc.parent / "ca.pem", etc, state_dir)
    assert _pair_matches(etc, state_dir)
