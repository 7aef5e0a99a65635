"""Issue 13 item 6: the files a config names are signed too, through SHA-256 pins in its [files] table.

Before, swapping ``instance.ca_file``, an ``[[allow]] tls_ca`` or the client certificate after signing
left ``config verify`` at exit 0, and ``run`` trusted the new file.
"""

from __future__ import annotations

import datetime as dt
import json
import tomllib
from pathlib import Path

import pytest

from appliance.config.pinning import MARK, pin_files
from appliance.config.verify import load_verified_config, try_reload
from appliance.errors import ConfigError
from appliance.probes.base import MemoryAudit
from hardening.filepins import FilePinError
from hardening.signing.keys import load_private_key
from hardening.tls import TLSConfigError, client_context
from tests.helpers import Pki
from tests.signing.helpers import install_trust, write_signed_config
from tests.support.signing_cli import FAR, fails, ok

SINCE = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(days=1)
RULE = """
[[allow]]
cidr = "127.0.0.0/8"
probes = ["http"]
ports = [443]
tls_ca = "targets-ca.pem"
"""


def config(version: int = 3) -> bytes:
    return f"""version = {version}
expires = {FAR.strftime("%Y-%m-%dT%H:%M:%SZ")}

[appliance]
name = "edge-01"

[instance]
url = "https://acme.service-now.com"
ca_file = "instance-ca.pem"
client_cert = "appliance.crt"
client_key = "appliance.key"
{RULE}""".encode()


@pytest.fixture
def ws(tmp_path: Path, dev_pki: Pki) -> Path:
    """An admin workstation: two keys, a config and the files it names, a trust root needing one."""
    ws, state = tmp_path / "workstation", tmp_path / "state"
    ws.mkdir()
    for name in ("alice", "bob"):
        ok("keygen", "--out", "keys", "--name", name, "--no-passphrase", cwd=ws)
    ok("trust", "init", "--pubkey", "keys/alice.pub", "keys/bob.pub", "--state-dir", state, cwd=ws)
    (ws / "instance-ca.pem").write_bytes(dev_pki.ca.cert.read_bytes())
    (ws / "targets-ca.pem").write_bytes(dev_pki.ca.cert.read_bytes())
    (ws / "appliance.crt").write_bytes(dev_pki.client.cert.read_bytes())
    (ws / "midbox.toml").write_bytes(config())
    return ws


def verify(ws: Path, *extra: str) -> str:
    return ok("config", "verify", "midbox.toml", "--state-dir", ws.parent / "state", *extra, cwd=ws)


@pytest.mark.parametrize("swapped", ["instance-ca.pem", "targets-ca.pem"])
def test_a_file_swapped_after_signing_is_refused(ws: Path, dev_pki: Pki, swapped: str) -> None:
    out = ok("config", "sign", "midbox.toml", "--key", "keys/alice.key", cwd=ws)
    assert "wrote [files]" in out
    pins = tomllib.loads((ws / "midbox.toml").read_text())["files"]
    assert set(pins) == {"instance-ca.pem", "targets-ca.pem"}
    out = verify(ws)
    assert "files pinned: 2 of 2" in out and "WARN" not in out
    original = (ws / swapped).read_bytes()
    (ws / swapped).write_bytes(dev_pki.server.cert.read_bytes())  # another certificate
    error = fails(1, "config", "verify", "midbox.toml", "--state-dir", ws.parent / "state", cwd=ws)
    assert "is not the file that was signed" in error and "midbox config sign --replace" in error
    (ws / swapped).write_bytes(original)
    verify(ws)


def test_a_renewed_client_certificate_needs_no_new_signature(ws: Path, dev_pki: Pki) -> None:
    # The client certificate is the host's own identity, renewed on the host ('midbox enroll --renew')
    # without the offline admins: it is not pinned, so a renewal does not refuse the config.
    ok("config", "sign", "midbox.toml", "--key", "keys/alice.key", cwd=ws)
    (ws / "appliance.crt").write_bytes(dev_pki.server.cert.read_bytes())
    out = verify(ws)
    assert out.startswith("OK") and "files pinned: 2 of 2" in out and "WARN" not in out


def test_co_signing_signs_the_same_bytes_and_checks_the_pins(ws: Path, dev_pki: Pki) -> None:
    ok("config", "sign", "midbox.toml", "--key", "keys/alice.key", cwd=ws)
    signed = (ws / "midbox.toml").read_bytes()
    out = ok("config", "sign", "midbox.toml", "--key", "keys/bob.key", cwd=ws)
    assert "holds 2 signature(s)" in out and "wrote [files]" not in out
    assert (ws / "midbox.toml").read_bytes() == signed
    info = json.loads(verify(ws, "--json"))
    assert len(info["signers"]) == 2 and info["warnings"] == []
    assert all(f["sha256"] for f in info["files"].values())
    # A co-signer whose CA differs from the one the first signer pinned is told so, and signs nothing.
    (ws / "midbox.toml.sig").unlink()
    ok("config", "sign", "midbox.toml", "--key", "keys/alice.key", cwd=ws)
    (ws / "instance-ca.pem").write_bytes(dev_pki.server.cert.read_bytes())
    sig = (ws / "midbox.toml.sig").read_bytes()
    error = fails(1, "config", "sign", "midbox.toml", "--key", "keys/bob.key", cwd=ws)
    assert "not the file the first signer pinned" in error and "--replace" in error
    assert (ws / "midbox.toml.sig").read_bytes() == sig and (ws / "midbox.toml").read_bytes() == signed


def test_an_old_config_without_pins_loads_with_a_warning_until_signed_again(ws: Path) -> None:
    # Signed as an older midbox signed it: the exact bytes, no [files] table.
    key = load_private_key((ws / "keys/alice.key").read_bytes(), None)
    write_signed_config(ws, [key], config(), version=3, expires=FAR, not_before=SINCE)
    out = verify(ws)
    assert out.count("WARN") == 2 and "midbox config sign --replace" in out and "files pinned: 0 of 2" in out
    # A co-signer signs those bytes as they are (the first signature stays valid), and is told why not pinned.
    out = ok("config", "sign", "midbox.toml", "--key", "keys/bob.key", cwd=ws)
    assert "holds 2 signature(s)" in out and "is not pinned" in out
    assert len(json.loads(verify(ws, "--json"))["signers"]) == 2
    # --replace starts over, with pins.
    (ws / "midbox.toml").write_bytes(config(version=4))
    out = ok("config", "sign", "midbox.toml", "--key", "keys/alice.key", "--replace", cwd=ws)
    assert "wrote [files]" in out and "holds 1 signature(s)" in out
    out = verify(ws)
    assert "WARN" not in out and "files pinned: 2 of 2" in out


def test_reload_refuses_a_swapped_ca_and_keeps_the_running_config(tmp_path: Path, dev_pki: Pki) -> None:
    from hardening.signing.keys import generate

    key = generate()
    state = tmp_path / "state"
    install_trust(state, [key])
    ws = tmp_path / "ws"
    ws.mkdir()
    for name in ("instance-ca.pem", "targets-ca.pem", "appliance.crt"):
        (ws / name).write_bytes(dev_pki.ca.cert.read_bytes())
    data = pin_files(config(), ws / "midbox.toml").data
    path = write_signed_config(ws, [key], data, version=3, expires=FAR, not_before=SINCE)
    now = dt.datetime.now(dt.UTC)
    current = load_verified_config(path, state, now)
    (ws / "instance-ca.pem").write_bytes(dev_pki.server.cert.read_bytes())
    audit = MemoryAudit()
    outcome = try_reload(current, path, state, now, audit)
    assert outcome.config is current and not outcome.changed
    assert outcome.reason and "not the file that was signed" in outcome.reason
    assert [e for e, _ in audit.events] == ["config.reload_refused"]
    with pytest.raises(FilePinError, match="instance.ca_file"):
        load_verified_config(path, state, now, commit=False)


def test_the_tls_context_uses_the_bytes_it_checked(tmp_path: Path, dev_pki: Pki) -> None:
    """``run`` builds its instance TLS context from the pinned file: another CA is refused there too."""
    import hashlib

    ca = tmp_path / "ca.pem"
    ca.write_bytes(dev_pki.ca.cert.read_bytes())
    pin = hashlib.sha256(ca.read_bytes()).hexdigest()
    client_context(ca_file=ca, client_cert=None, client_key=None, ca_sha256=pin)
    ca.write_bytes(dev_pki.server.cert.read_bytes())
    with pytest.raises(FilePinError, match="not the file that was signed"):
        client_context(ca_file=ca, client_cert=None, client_key=None, ca_sha256=pin)
    with pytest.raises(FilePinError, match="not found"):
        client_context(ca_file=tmp_path / "none.pem", client_cert=None, client_key=None, ca_sha256=pin)
    with pytest.raises(TLSConfigError):  # unpinned: as before, the file as it is
        client_context(ca_file=tmp_path / "none.pem", client_cert=None, client_key=None)


def test_the_files_table_is_strict(tmp_path: Path) -> None:
    from appliance.config.parse import parse_config

    source = tmp_path / "midbox.toml"
    good = "a" * 64
    with pytest.raises(ConfigError, match="pins a file no key of the config names"):
        parse_config(config() + f'\n[files]\n"other.pem" = "{good}"\n'.encode(), source)
    with pytest.raises(ConfigError, match="must be a SHA-256"):
        parse_config(config() + b'\n[files]\n"instance-ca.pem" = "abc"\n', source)
    parsed = parse_config(config() + f'\n[files]\n"instance-ca.pem" = "{good}"\n'.encode(), source)
    assert {f.key: f.sha256 for f in parsed.files} == {"instance.ca_file": good, "allow[0].tls_ca": None}
    # config sign rewrites only a last [files] table, and only the pins.
    (tmp_path / "instance-ca.pem").write_bytes(b"-----BEGIN CERTIFICATE-----\n")
    first = pin_files(config(), source).data
    assert first.count(MARK) == 1 and first.startswith(config().rstrip())
    assert pin_files(first, source).data == first  # signing again changes nothing
    (tmp_path / "instance-ca.pem").write_bytes(b"other")
    again = pin_files(first, source).data
    assert again.count(MARK) == 1 and again != first
    not_last = config() + f'\n[files]\n"instance-ca.pem" = "{good}"\n\n[credential_map.tags]\n'.encode()
    with pytest.raises(ConfigError, match="must be the last table"):
        pin_files(not_last, source)
