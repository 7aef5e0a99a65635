"""Checkpoints: the signing key file, the ECC payload and its strict parser, signature checks."""

from __future__ import annotations

import base64
import dataclasses
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hardening.audit import (
    CheckpointError,
    SigningKeyError,
    Verdict,
    checkpoint_xml,
    load_or_create_signing_key,
    load_public_key,
    parse_checkpoint_xml,
    public_key_pem,
    verify_checkpoint,
    verify_log,
)
from hardening.audit._entry import parse_entry

from .conftest import lines_of, write_log


def test_key_is_created_once_private_and_reused(state: Path) -> None:
    key = load_or_create_signing_key(state)
    path = state / "audit-signing.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = load_or_create_signing_key(state)
    assert public_key_pem(again.public_key()) == public_key_pem(key.public_key())
    assert [p.name for p in state.iterdir()] == ["audit-signing.key"]  # no temp file left behind


def test_key_readable_by_others_is_refused(state: Path) -> None:
    load_or_create_signing_key(state)
    os.chmod(state / "audit-signing.key", 0o644)
    with pytest.raises(SigningKeyError, match="chmod 600"):
        load_or_create_signing_key(state)


def test_log_checkpoint_roundtrips_and_is_recorded(state: Path) -> None:
    key = load_or_create_signing_key(state)
    audit = write_log(state, 4)
    cp = audit.checkpoint(key)
    audit.close()
    assert cp.size == 5
    last = parse_entry(lines_of(state)[-1])
    assert last.event == "audit.checkpoint" and last.fields == {
        "size": 5,
        "head": cp.head,
        "key_id": cp.key_id,
    }
    payload = checkpoint_xml(cp)
    assert payload.startswith(b'<results probe_time="0" result_code="0"><result><checkpoint ')
    back = verify_checkpoint(parse_checkpoint_xml(payload), load_public_key(public_key_pem(key.public_key())))
    assert back == cp
    assert verify_log(state / "audit", [back]).verdict is Verdict.INTACT


def payload(state: Path) -> tuple[bytes, Ed25519PrivateKey]:
    key = load_or_create_signing_key(state)
    audit = write_log(state, 1)
    cp = audit.checkpoint(key)
    audit.close()
    return checkpoint_xml(cp), key


def test_altered_checkpoint_fails_its_signature(state: Path) -> None:
    data, key = payload(state)
    unverified = parse_checkpoint_xml(data)
    for change in (
        {"size": unverified.size + 5},
        {"head": "ab" * 32},
        {"time": "2030-01-01T00:00:00.000000Z"},
    ):
        with pytest.raises(CheckpointError, match="does not verify"):
            verify_checkpoint(dataclasses.replace(unverified, **change), key.public_key())


def test_checkpoint_of_another_key_is_refused(state: Path) -> None:
    data, _ = payload(state)
    with pytest.raises(CheckpointError, match="--pubkey"):
        verify_checkpoint(parse_checkpoint_xml(data), Ed25519PrivateKey.generate().public_key())


def test_forged_signature_with_matching_key_id_is_refused(state: Path) -> None:
    data, key = payload(state)
    unverified = parse_checkpoint_xml(data)
    forged = Ed25519PrivateKey.generate().sign(b"anything")
    with pytest.raises(CheckpointError, match="does not verify"):
        verify_checkpoint(dataclasses.replace(unverified, signature=forged), key.public_key())


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.replace(b"<checkpoint ", b'<checkpoint extra="1" '), "unknown"),
        (lambda d: d.replace(b' size="', b' sighs="'), "unknown"),
        (lambda d: d.replace(b'result_code="0"', b'result_code="1"'), "results"),
        (lambda d: d.replace(b"</result>", b"<result/></result>"), "exactly one"),
        (lambda d: d.replace(b"<result>", b"<result>text"), "text"),
        (lambda d: d.replace(b' size="', b' size="0'), "malformed"),
        (lambda d: d.replace(b' size="', b' size="-'), "malformed"),
        (lambda d: d.replace(b"/></result>", b">x</checkpoint></result>"), "empty"),
        (lambda d: d[:-20], "well-formed"),
        (lambda d: b"<!DOCTYPE r [<!ENTITY e 'x'>]>" + d, "well-formed"),
        (lambda d: d + b" " * 9000, "at most"),
    ],
)
def test_parser_is_strict(state: Path, edit: object, message: str) -> None:
    data, _ = payload(state)
    changed = edit(data)  # type: ignore[operator]
    assert changed != data
    with pytest.raises(CheckpointError, match=message):
        parse_checkpoint_xml(changed)


def test_signature_must_be_base64_of_64_bytes(state: Path) -> None:
    data, _ = payload(state)
    sig = parse_checkpoint_xml(data).signature
    shorter = base64.b64encode(sig[:48])
    with pytest.raises(CheckpointError, match="malformed"):
        parse_checkpoint_xml(data.replace(base64.b64encode(sig), shorter))
