"""minisign-format release signatures: round trip, attacks, and interoperability with minisign itself."""

from __future__ import annotations

import base64
import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hardening.release import (
    ReleaseError,
    key_id_for,
    parse_public_key,
    parse_signature,
    parse_sums,
    public_key_file,
    render_sums,
    sign,
    verify_signature,
)

MESSAGE = b"0" * 64 + b"  midbox\n"


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def test_round_trip_returns_the_trusted_comment(key: Ed25519PrivateKey) -> None:
    sig = sign(MESSAGE, key, "timestamp:1\tfile:SHA256SUMS")
    pub = parse_public_key(public_key_file(key.public_key()))
    verified = verify_signature(MESSAGE, parse_signature(sig), pub)
    assert verified.trusted_comment == "timestamp:1\tfile:SHA256SUMS"
    assert verified.key_id_hex == pub.key_id_hex


def test_signatures_are_deterministic(key: Ed25519PrivateKey) -> None:
    assert sign(MESSAGE, key, "c") == sign(MESSAGE, key, "c")


def test_flipped_byte_in_message_is_refused(key: Ed25519PrivateKey) -> None:
    sig = parse_signature(sign(MESSAGE, key, "c"))
    pub = parse_public_key(public_key_file(key.public_key()))
    tampered = bytearray(MESSAGE)
    tampered[3] ^= 1
    with pytest.raises(ReleaseError, match="does not verify"):
        verify_signature(bytes(tampered), sig, pub)


def test_changed_trusted_comment_is_refused(key: Ed25519PrivateKey) -> None:
    lines = sign(MESSAGE, key, "midbox 0.1.0").decode().splitlines()
    lines[2] = "trusted comment: midbox 9.9.9"
    pub = parse_public_key(public_key_file(key.public_key()))
    with pytest.raises(ReleaseError, match="does not verify"):
        verify_signature(MESSAGE, parse_signature(("\n".join(lines) + "\n").encode()), pub)


def test_other_key_is_refused_by_key_id(key: Ed25519PrivateKey) -> None:
    other = parse_public_key(public_key_file(Ed25519PrivateKey.generate().public_key()))
    with pytest.raises(ReleaseError, match="not by the release key"):
        verify_signature(MESSAGE, parse_signature(sign(MESSAGE, key, "c")), other)


def test_other_key_with_the_same_key_id_is_refused(key: Ed25519PrivateKey) -> None:
    # An attacker can copy the key id into their own signature; the signature check must still fail.
    attacker = Ed25519PrivateKey.generate()
    raw = base64.b64decode(sign(MESSAGE, attacker, "c").decode().splitlines()[1])
    real_id = key_id_for(key.public_key().public_bytes_raw())
    forged = sign(MESSAGE, attacker, "c").decode().splitlines()
    forged[1] = base64.b64encode(raw[:2] + real_id + raw[10:]).decode()
    pub = parse_public_key(public_key_file(key.public_key()))
    with pytest.raises(ReleaseError, match="does not verify"):
        verify_signature(MESSAGE, parse_signature(("\n".join(forged) + "\n").encode()), pub)


def test_legacy_unhashed_signature_is_accepted(key: Ed25519PrivateKey) -> None:
    key_id = key_id_for(key.public_key().public_bytes_raw())
    sig = key.sign(MESSAGE)
    comment = "legacy"
    text = (
        "untrusted comment: x\n"
        + base64.b64encode(b"Ed" + key_id + sig).decode()
        + f"\ntrusted comment: {comment}\n"
        + base64.b64encode(key.sign(sig + comment.encode())).decode()
        + "\n"
    )
    pub = parse_public_key(public_key_file(key.public_key()))
    assert verify_signature(MESSAGE, parse_signature(text.encode()), pub).trusted_comment == "legacy"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"untrusted comment: x\n!!!notbase64\ntrusted comment: y\nAAAA\n",
        b"untrusted comment: x\nAAAA\ntrusted comment: y\nAAAA\n",
        b"x" * 5000,
        b"\xff\xfe\n\n\n\n",
    ],
)
def test_malformed_signature_files_are_refused(data: bytes) -> None:
    with pytest.raises(ReleaseError):
        parse_signature(data)


def test_public_key_accepts_the_bare_base64_line(key: Ed25519PrivateKey) -> None:
    line = public_key_file(key.public_key()).splitlines()[1]
    assert parse_public_key(line).key_id == key_id_for(key.public_key().public_bytes_raw())


@pytest.mark.parametrize(
    "text",
    [
        "0" * 64 + "  ../etc/passwd\n",
        "0" * 64 + "  sub/midbox\n",
        "0" * 64 + "  -rf\n",
        "0" * 64 + " midbox\n",
        "0" * 64 + "  midbox\n" + "1" * 64 + "  midbox\n",
        "0" * 64 + "  SHA256SUMS\n",
        "",
        "0" * 63 + "  midbox\n",
    ],
)
def test_sums_parser_is_strict(text: str) -> None:
    with pytest.raises(ReleaseError):
        parse_sums(text.encode())


def test_sums_render_and_parse_agree() -> None:
    files = {"midbox": "a" * 64, "INSTALL.md": "b" * 64}
    assert parse_sums(render_sums(files)) == files


needs_minisign = pytest.mark.skipif(shutil.which("minisign") is None, reason="minisign is not installed")


@needs_minisign
def test_minisign_verifies_our_signature(tmp_path: Path, key: Ed25519PrivateKey) -> None:
    (tmp_path / "SHA256SUMS").write_bytes(MESSAGE)
    (tmp_path / "SHA256SUMS.minisig").write_bytes(sign(MESSAGE, key, "timestamp:1\tfile:SHA256SUMS"))
    (tmp_path / "release.pub").write_bytes(public_key_file(key.public_key()))
    ok = subprocess.run(
        ["minisign", "-V", "-p", "release.pub", "-m", "SHA256SUMS"],
        cwd=tmp_path,
        capture_output=True,
        timeout=30,
    )
    assert ok.returncode == 0, ok.stderr
    (tmp_path / "SHA256SUMS").write_bytes(MESSAGE + b"x")
    bad = subprocess.run(
        ["minisign", "-V", "-p", "release.pub", "-m", "SHA256SUMS"],
        cwd=tmp_path,
        capture_output=True,
        timeout=30,
    )
    assert bad.returncode != 0


@needs_minisign
def test_we_verify_a_signature_made_by_minisign(tmp_path: Path) -> None:
    subprocess.run(
        ["minisign", "-G", "-W", "-p", "m.pub", "-s", "m.key"],
        cwd=tmp_path,
        check=True,
        capture_output=True,
        timeout=30,
    )
    (tmp_path / "SHA256SUMS").write_bytes(MESSAGE)
    subprocess.run(
        ["minisign", "-S", "-s", "m.key", "-m", "SHA256SUMS", "-t", "made by minisign"],
        cwd=tmp_path,
        check=True,
        capture_output=True,
        timeout=30,
    )
    pub = parse_public_key((tmp_path / "m.pub").read_bytes())
    sig = parse_signature((tmp_path / "SHA256SUMS.minisig").read_bytes())
    assert verify_signature(MESSAGE, sig, pub).trusted_comment == "made by minisign"
    with pytest.raises(ReleaseError):
        verify_signature(hashlib.sha256(MESSAGE).digest(), sig, pub)
