"""The appliance's CredentialSource over the store: handles without secrets, decrypt at use."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from appliance.credentials import StoreCredentials, load_host_key, open_credentials
from appliance.errors import ApplianceError, ProbeError
from appliance.interfaces import CredentialSource
from hardening.vault import CredentialMeta, KeySource, Secret, SecretRedactor, VaultPaths, edit_store
from tests.vault.conftest import PLANTED, put


def test_lookup_and_secret_at_use(small_store: VaultPaths) -> None:
    creds: CredentialSource = open_credentials(small_store.state_dir)
    cred = creds.lookup("web")
    assert (cred.alias, cred.type, cred.user, dict(cred.options)) == ("web", "http-basic", "admin", {})
    assert PLANTED.decode() not in repr(cred)
    assert cred.secret(0) == PLANTED
    with pytest.raises(IndexError):
        cred.secret(1)


def test_unknown_alias_is_a_clear_appliance_error(small_store: VaultPaths) -> None:
    creds = open_credentials(small_store.state_dir)
    with pytest.raises(ProbeError, match="'nope' is not in the store; add it with 'midbox creds add nope'"):
        creds.lookup("nope")


def test_no_store_yet_lookups_fail_clearly(paths: VaultPaths) -> None:
    creds = open_credentials(paths.state_dir)
    with pytest.raises(ApplianceError, match="no credential store"):
        creds.lookup("web")


def test_snmp_usm_options_and_two_secrets(paths: VaultPaths, source: KeySource) -> None:
    with edit_store(paths, source, create=True) as draft:
        meta = CredentialMeta(
            "v3", "snmp-usm", "monitor", (("auth_protocol", "SHA-512"), ("priv_protocol", "AES"))
        )
        draft.put(meta, [Secret(b"authpass1"), Secret(b"privpass2")])
    cred = open_credentials(paths.state_dir).lookup("v3")
    assert cred.options == {"auth_protocol": "SHA-512", "priv_protocol": "AES"}
    assert (cred.secret(0), cred.secret(1)) == (b"authpass1", b"privpass2")


def test_changes_on_disk_are_seen_and_a_tampered_store_is_refused(
    small_store: VaultPaths, source: KeySource
) -> None:
    creds = open_credentials(small_store.state_dir)
    put(small_store, source, "later", b"added-while-running")
    assert creds.lookup("later").secret() == b"added-while-running"
    data = bytearray(small_store.store.read_bytes())
    data[-1] ^= 1
    small_store.store.write_bytes(bytes(data))
    with pytest.raises(ProbeError, match="tampered"):
        creds.lookup("web")


def test_passphrase_and_systemd_host_key(tmp_path: Path, paths: VaultPaths) -> None:
    creddir = tmp_path / "creds"
    creddir.mkdir(mode=0o700)
    (creddir / "midbox.host-key").write_bytes(bytes(range(32)))
    (creddir / "midbox.host-key").chmod(0o400)
    src = KeySource(paths.host_key, credentials_dir=creddir, passphrase=Secret(b"long passphrase"))
    put(paths, src, "web")
    assert not paths.host_key.exists()  # the key came from the credentials directory
    creds = open_credentials(paths.state_dir, credentials_directory=creddir, passphrase=b"long passphrase")
    assert creds.lookup("web").secret() == PLANTED
    assert load_host_key(paths.state_dir, creddir) == bytes(range(32))


def test_redactor_learns_secrets_as_they_are_used(
    small_store: VaultPaths, caplog: pytest.LogCaptureFixture
) -> None:
    redactor = SecretRedactor()
    creds = StoreCredentials(VaultPaths(small_store.state_dir), KeySource(small_store.host_key), redactor)
    creds.lookup("web").secret()
    caplog.handler.addFilter(redactor)
    try:
        with caplog.at_level(logging.INFO):
            logging.getLogger("tests.vault").info("echo %s", PLANTED.decode())
    finally:
        caplog.handler.removeFilter(redactor)
    assert "echo ***" in caplog.text and PLANTED.decode() not in caplog.text


def test_load_host_key_creates_once(paths: VaultPaths) -> None:
    first = load_host_key(paths.state_dir, create=True)
    assert len(first) == 32 and load_host_key(paths.state_dir) == first
    assert paths.host_key.stat().st_mode & 0o777 == 0o600


def test_a_store_seen_before_and_now_gone_is_refused(small_store: VaultPaths) -> None:
    creds = open_credentials(small_store.state_dir)
    small_store.store.unlink()
    with pytest.raises(ProbeError, match="missing, but this appliance recorded generation 2"):
        creds.lookup("web")
    from hardening.vault import VaultRollbackError

    with pytest.raises(VaultRollbackError):
        open_credentials(small_store.state_dir)


def test_store_passphrase_from_the_credentials_directory(tmp_path: Path, paths: VaultPaths) -> None:
    creddir = tmp_path / "creds"
    creddir.mkdir(mode=0o700)
    put(paths, KeySource(paths.host_key, passphrase=Secret(b"unit passphrase")), "web")
    (creddir / "midbox.store-passphrase").write_bytes(b"unit passphrase\n")
    (creddir / "midbox.store-passphrase").chmod(0o400)
    assert open_credentials(paths.state_dir, credentials_directory=creddir).lookup("web").secret() == PLANTED
    (creddir / "midbox.store-passphrase").chmod(0o600)
    (creddir / "midbox.store-passphrase").write_bytes(b"wrong one\n")
    from hardening.vault import VaultLockedError

    with pytest.raises(VaultLockedError):
        open_credentials(paths.state_dir, credentials_directory=creddir)
