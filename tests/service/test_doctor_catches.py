"""``doctor`` catches what bites an operator later: aliases the store lacks, files the service user
cannot read, a CA that does not match, an unreachable instance by cause, a clock beyond the allowance."""

from __future__ import annotations

import datetime as dt
import email.utils
import io
import json
import os
import socket
import ssl
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from appliance.cli import main as midbox_main
from appliance.config.model import InstanceSection
from appliance.doctor import Level, _clock
from appliance.doctor_access import can_access, check_service_user
from appliance.doctor_net import diagnose
from devinstance import pki
from tests.helpers import Pki, dev_instance
from tests.signing.helpers import write_signed_config
from tests.support.doctor_catches import creds_add
from tests.support.running import EXPIRES, NOT_BEFORE, config_bytes

RULE = 'ports = [22]\ncredentials = ["linux-ro", "snmp-ro", "ghost"]\n'


def doctor_lines(monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[int, list[dict[str, str]]]:
    out = io.StringIO()
    monkeypatch.setattr("sys.stdout", out)
    code = midbox_main(["doctor", "--json", *args])
    return code, [json.loads(line) for line in out.getvalue().splitlines()]


def aliased_config(admin_key: tuple[Path, Ed25519PrivateKey], url: str, p: Pki) -> Path:
    admin, key = admin_key
    body = config_bytes(url, p, 1, "443").replace(b'probes = ["http"]', b'probes = ["ssh"]')
    body = body.replace(b"ports = [443]\n", RULE.encode())
    return write_signed_config(admin, [key], body, version=1, expires=EXPIRES, not_before=NOT_BEFORE)


def test_aliases_missing_or_of_a_type_the_rule_cannot_use(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    state_dir: Path,
    dev_pki: Pki,
    signed: tuple[Path, Ed25519PrivateKey],
) -> None:
    creds_add(state_dir, "linux-ro", "ssh-password")
    creds_add(state_dir, "snmp-ro", "snmp-community")
    with dev_instance(dev_pki, tmp_path / "db.sqlite") as instance:
        config = aliased_config(signed, instance.url, dev_pki)
        code, found = doctor_lines(monkeypatch, "--config", str(config), "--state-dir", str(state_dir))
    creds = [f["detail"] for f in found if f["check"] == "credentials" and f["level"] == "FAIL"]
    assert code == 1
    assert len(creds) == 2, found
    assert "'ghost', which is not in the store; add it with 'midbox creds add ghost --type" in creds[1]
    assert "'snmp-ro', a snmp-community, which none of its probes (ssh) can use" in creds[0]

    # policy explain still says ALLOW (the policy does), and warns that the alias is missing here.
    out = io.StringIO()
    monkeypatch.setattr("sys.stdout", out)
    args = ["policy", "explain", "--config", str(config), "--state-dir", str(state_dir)]
    code = midbox_main([*args, "--topic", "SSHCommand", "--target", "127.0.0.1", "--credential", "ghost"])
    assert code == 0 and out.getvalue().startswith("ALLOW")
    assert "WARNING: rule 1 names credential 'ghost', which is not in the store" in out.getvalue()


def test_a_ca_that_does_not_match_names_ca_file_and_the_issuer_and_exits_1(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    state_dir: Path,
    dev_pki: Pki,
    signed: tuple[Path, Ed25519PrivateKey],
) -> None:
    other = pki.ensure_ca(tmp_path / "other-ca", name="some other CA")
    with dev_instance(dev_pki, tmp_path / "db.sqlite") as instance:
        admin, key = signed
        body = config_bytes(instance.url, dev_pki, 1, "443").replace(
            str(dev_pki.ca.cert).encode(), str(other.cert).encode()
        )
        config = write_signed_config(admin, [key], body, version=1, expires=EXPIRES, not_before=NOT_BEFORE)
        code, found = doctor_lines(monkeypatch, "--config", str(config), "--state-dir", str(state_dir))
    detail = next(f["detail"] for f in found if f["check"] == "instance")
    assert code == 1, found
    assert f"instance.ca_file {other.cert}" in detail and "midbox dev instance CA" in detail
    assert "_ssl.c" not in detail


def test_a_refused_port_says_so_and_exits_3(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    state_dir: Path,
    dev_pki: Pki,
    signed: tuple[Path, Ed25519PrivateKey],
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"https://127.0.0.1:{s.getsockname()[1]}"
    admin, key = signed
    body = config_bytes(dead, dev_pki, 1, "443")
    config = write_signed_config(admin, [key], body, version=1, expires=EXPIRES, not_before=NOT_BEFORE)
    code, found = doctor_lines(monkeypatch, "--config", str(config), "--state-dir", str(state_dir))
    detail = next(f["detail"] for f in found if f["check"] == "instance")
    assert code == 3 and "refused the connection: check instance.url's port and firewalls" in detail


def _instance(proxy: str | None = None) -> InstanceSection:
    return InstanceSection(
        "https://acme.service-now.com", Path("/etc/midbox/ca.pem"), None, None, proxy=proxy
    )


def _chained(outer: Exception, inner: BaseException) -> Exception:
    outer.__cause__ = inner
    return outer


@pytest.mark.parametrize(
    ("error", "proxy", "expected", "unreachable"),
    [
        (
            _chained(httpx.ConnectError("x"), socket.gaierror(-2, "Name or service not known")),
            None,
            "cannot resolve 'acme.service-now.com'",
            True,
        ),
        (httpx.ConnectTimeout("x"), None, "did not answer within 30 s", True),
        (httpx.ProxyError("407"), "http://proxy:3128", "the proxy http://proxy:3128 failed", True),
        (
            _chained(httpx.ConnectError("x"), ssl.SSLError(1, "TLSV1_ALERT_UNKNOWN_CA")),
            None,
            "TLS handshake with acme.service-now.com:443 failed",
            False,
        ),
    ],
)
def test_unreachable_is_split_by_cause(
    error: Exception, proxy: str | None, expected: str, unreachable: bool
) -> None:
    why = diagnose(error, _instance(proxy), 30.0)
    assert expected in why.detail and why.unreachable is unreachable


def test_clock_beyond_the_signature_allowance_fails() -> None:
    now = dt.datetime(2026, 11, 25, 12, tzinfo=dt.UTC)
    header = email.utils.format_datetime(now + dt.timedelta(minutes=10), usegmt=True)
    (finding,) = _clock(header, now)
    assert finding.level is Level.FAIL and "fix NTP" in finding.detail
    (finding,) = _clock(email.utils.format_datetime(now + dt.timedelta(minutes=2), usegmt=True), now)
    assert finding.level is Level.WARN


@pytest.mark.skipif(os.name != "posix" or os.geteuid() != 0, reason="root checks files as another user")
def test_root_checks_files_as_the_service_user(
    tmp_path: Path,
    dev_pki: Pki,
    state_dir: Path,
    signed: tuple[Path, Ed25519PrivateKey],
) -> None:
    from appliance.config.verify import load_verified_config

    config_path = aliased_config(signed, "https://127.0.0.1:9", dev_pki)
    config = load_verified_config(config_path, state_dir, dt.datetime.now(dt.UTC), commit=False)
    found = check_service_user(config, state_dir, "nobody")
    assert all(f.level is Level.FAIL for f in found) and found
    assert any(f"chown -R nobody: {state_dir}" in f.detail for f in found)
    nobody = 65534
    open_file = tmp_path / "open"
    open_file.write_text("x")
    open_file.chmod(0o644)
    tmp_path.chmod(0o755)
    assert can_access(open_file, nobody, frozenset({nobody}), 4) is (
        all(os.stat(p).st_mode & 1 for p in open_file.parents)
    )
    open_file.chmod(0o600)
    assert not can_access(open_file, nobody, frozenset({nobody}), 4)
