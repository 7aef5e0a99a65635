"""Host-key pins: parsing is strict, lookups are exact, a changed key is never a match."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import subprocess
from pathlib import Path

import pytest

from appliance.commands.hosts import split_target
from appliance.errors import UsageError
from hardening.known_hosts import (
    KnownHosts,
    KnownHostsError,
    Verdict,
    host_pattern,
    parse_known_hosts,
    parse_public_key_file,
)
from tests.support.cli import run_process
from tests.support.known_hosts import b64, key


def test_host_pattern_follows_openssh() -> None:
    assert host_pattern("Router1", 22) == "router1"
    assert host_pattern("10.0.0.1", 2222) == "[10.0.0.1]:2222"
    assert host_pattern("[::1]", 2222) == "[::1]:2222"


def test_unknown_match_changed(tmp_path: Path) -> None:
    kh = KnownHosts(tmp_path / "known_hosts")
    k1, k2 = key(fill=b"A"), key(fill=b"B")
    assert kh.check(["10.0.0.1"], 22, k1) is Verdict.UNKNOWN
    assert kh.pin("10.0.0.1", 22, k1)
    assert kh.check(["10.0.0.1"], 22, k1) is Verdict.MATCH
    assert kh.check(["10.0.0.1"], 22, k2) is Verdict.CHANGED
    # The same host on another port is another pin.
    assert kh.check(["10.0.0.1"], 2222, k1) is Verdict.UNKNOWN
    # A pin under any of the names (the job's name or the address) counts.
    assert kh.check(["router", "10.0.0.1"], 22, k1) is Verdict.MATCH
    assert (tmp_path / "known_hosts").stat().st_mode & 0o777 == 0o600


def test_pin_refuses_a_different_key_without_replace(tmp_path: Path) -> None:
    kh = KnownHosts(tmp_path / "known_hosts")
    kh.pin("h", 2222, key(fill=b"A"))
    assert not kh.pin("h", 2222, key(fill=b"A"))  # idempotent
    with pytest.raises(KnownHostsError, match="--replace"):
        kh.pin("h", 2222, key(fill=b"B"))
    assert kh.pin("h", 2222, key(fill=b"B"), replace=True)
    assert kh.check(["h"], 2222, key(fill=b"B")) is Verdict.MATCH
    assert kh.check(["h"], 2222, key(fill=b"A")) is Verdict.CHANGED


def test_hashed_names_are_understood(tmp_path: Path) -> None:
    salt = b"0123456789abcdef0123"
    digest = hmac.new(salt, b"[10.1.1.1]:2222", hashlib.sha1).digest()
    name = f"|1|{base64.b64encode(salt).decode()}|{base64.b64encode(digest).decode()}"
    k = key()
    (tmp_path / "known_hosts").write_text(f"{name} ssh-ed25519 {b64(k)}\n")
    kh = KnownHosts(tmp_path / "known_hosts")
    assert kh.check(["10.1.1.1"], 2222, k) is Verdict.MATCH
    assert kh.check(["10.1.1.2"], 2222, k) is Verdict.UNKNOWN


@pytest.mark.parametrize(
    "line",
    [
        "@cert-authority *.example ssh-ed25519 AAAA",
        "@revoked h ssh-ed25519 AAAA",
        "*.example ssh-ed25519 {k}",
        "h ssh-dss {k}",
        "h ssh-ed25519 not-base64!",
        "h ssh-rsa {k}",  # blob says ed25519, text says rsa
        "h ssh-ed25519",
    ],
)
def test_strict_parsing(line: str) -> None:
    with pytest.raises(KnownHostsError):
        parse_known_hosts(line.format(k=b64(key())).encode())


def test_oversized_file_is_refused() -> None:
    with pytest.raises(KnownHostsError, match="larger than"):
        parse_known_hosts(b"#" * 5_000_000)


def test_public_key_file_forms() -> None:
    k = key()
    assert parse_public_key_file(f"ssh-ed25519 {b64(k)} root@h\n".encode(), source="f") == k
    assert parse_public_key_file(f"[h]:2222 ssh-ed25519 {b64(k)}\n".encode(), source="f") == k
    with pytest.raises(KnownHostsError, match="exactly one"):
        parse_public_key_file(f"ssh-ed25519 {b64(k)}\nssh-ed25519 {b64(k)}\n".encode(), source="f")
    with pytest.raises(KnownHostsError):
        parse_public_key_file(b"-----BEGIN OPENSSH PRIVATE KEY-----\n", source="f")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("h", ("h", 22)),
        ("h:2222", ("h", 2222)),
        ("[::1]:2222", ("::1", 2222)),
        ("::1", ("::1", 22)),
        ("[fe80::1]", ("fe80::1", 22)),
        ("10.0.0.1:22", ("10.0.0.1", 22)),
    ],
)
def test_split_target(text: str, expected: tuple[str, int]) -> None:
    assert split_target(text) == expected


@pytest.mark.parametrize("text", ["", "h:0", "h:99999", "h:x", "[::1", "a,b", "*.example", "h:22:33x"])
def test_split_target_rejects(text: str) -> None:
    with pytest.raises(UsageError):
        split_target(text)


def midbox(*args: str) -> subprocess.CompletedProcess[str]:
    return run_process(*args, env=os.environ)


def test_hosts_pin_and_list_cli(tmp_path: Path) -> None:
    k = key()
    pub = tmp_path / "host.pub"
    pub.write_text(f"ssh-ed25519 {b64(k)} comment\n")
    state = str(tmp_path / "state")
    r = midbox("hosts", "pin", "10.0.0.9:2222", str(pub), "--state-dir", state)
    assert r.returncode == 0, r.stderr
    assert f"pinned: 10.0.0.9:2222 ssh-ed25519 {k.fingerprint()}" in r.stdout
    assert (tmp_path / "state" / "known_hosts").read_text() == f"[10.0.0.9]:2222 ssh-ed25519 {b64(k)}\n"
    r = midbox("hosts", "list", "--state-dir", state, "--json")
    assert r.returncode == 0 and k.fingerprint() in r.stdout
    other = tmp_path / "other.pub"
    other.write_text(f"ssh-ed25519 {b64(key(fill=b'Z'))}\n")
    r = midbox("hosts", "pin", "10.0.0.9:2222", str(other), "--state-dir", state)
    assert r.returncode == 1 and "--replace" in r.stderr
    assert midbox("hosts", "pin", "10.0.0.9:0", str(pub), "--state-dir", state).returncode == 2
    assert midbox("hosts", "pin", "h", str(tmp_path / "missing.pub"), "--state-dir", state).returncode == 2


def test_fingerprint_matches_ssh_keygen_format() -> None:
    k = key()
    digest = base64.b64encode(hashlib.sha256(k.blob).digest()).decode().rstrip("=")
    assert k.fingerprint() == f"SHA256:{digest}"
