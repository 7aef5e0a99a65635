"""Forward-secure sealing: whoever takes the host later cannot re-seal what was sealed before."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from hardening.audit import AuditOptions, Verdict, verify_log
from hardening.audit._entry import chain_hash, encode_entry, parse_entry
from hardening.audit.errors import SigningKeyError
from hardening.audit.seal import (
    SEAL_KEY_FILE,
    SEAL_VERIFY_FILE,
    VerificationKey,
    export_verification_key,
    parse_verification_key,
    seal_mac,
)

from .conftest import lines_of, rewrite_single, write_log

SEALED = AuditOptions(seal=True, seal_every_entries=10, seal_interval_s=3600)


def sealed_log(state: Path, count: int = 35) -> VerificationKey:
    audit = write_log(state, count, SEALED)
    audit.close()
    return parse_verification_key(export_verification_key(state / "audit"))


def seals(state: Path) -> list[int]:
    return [e.seq for e in map(parse_entry, lines_of(state)) if e.event == "audit.seal"]


def current_key(state: Path) -> tuple[int, bytes]:
    _, _, epoch, key = (state / "audit" / SEAL_KEY_FILE).read_text().split()
    return int(epoch), bytes.fromhex(key)


def test_sealed_log_verifies_with_the_exported_key(state: Path) -> None:
    vkey = sealed_log(state)
    assert seals(state) == [11, 22, 33, 39]  # every 10 entries, and one on close
    assert not (state / "audit" / SEAL_VERIFY_FILE).exists()
    report = verify_log(state / "audit", seal_key=vkey)
    assert report.verdict is Verdict.INTACT and report.sealed == 39
    assert "1 later entries not sealed yet" in report.detail  # the closing seal itself


def test_key_evolves_and_the_old_one_is_gone(state: Path) -> None:
    vkey = sealed_log(state)
    epoch, key = current_key(state)
    assert epoch == 4 and key == vkey.key_at(4) and key != vkey.key
    assert vkey.key.hex() not in (state / "audit" / SEAL_KEY_FILE).read_text()


def rewrite_from(lines: list[bytes], seq: int, keep_seals: bool) -> list[bytes]:
    """Change entry ``seq`` and recompute every later link, keeping or dropping the seals."""
    out = lines[:seq]
    prev = parse_entry(out[-1]).hash
    for raw in lines[seq:]:
        e = parse_entry(raw)
        fields = dict(e.fields)
        if e.seq == seq:
            fields["result_code"] = 0 if fields["result_code"] else 1
        if e.event == "audit.seal" and not keep_seals:
            continue
        line = encode_entry(len(out), e.time, prev, e.event, json.dumps(fields, separators=(",", ":")))
        out.append(line)
        prev = chain_hash(prev, line)
    return out


def test_consistent_rewrite_of_sealed_history_is_tampered(state: Path) -> None:
    vkey = sealed_log(state)
    rewrite_single(state, lambda ls: rewrite_from(ls, 5, keep_seals=True))
    assert verify_log(state / "audit").verdict is Verdict.INTACT  # the chain alone is fooled
    report = verify_log(state / "audit", seal_key=vkey)
    assert (report.verdict, report.seq) == (Verdict.TAMPERED, 11)


def test_resealing_with_the_stolen_current_key_is_tampered(state: Path) -> None:
    vkey = sealed_log(state)
    epoch, key = current_key(state)  # all an attacker who takes the host now can read

    def reseal(lines: list[bytes]) -> list[bytes]:
        # Drop every seal, change entry 5, recompute the chain, and seal it all with the current key.
        out = rewrite_from(lines, 5, keep_seals=False)
        head = parse_entry(out[-1]).hash
        fields = {"epoch": epoch, "mac": seal_mac(key, vkey.log_id, epoch, len(out), head), "size": len(out)}
        last = parse_entry(out[-1])
        out.append(
            encode_entry(len(out), last.time, head, "audit.seal", json.dumps(fields, separators=(",", ":")))
        )
        return out

    rewrite_single(state, reseal)
    assert verify_log(state / "audit").verdict is Verdict.INTACT
    report = verify_log(state / "audit", seal_key=vkey)
    assert report.verdict is Verdict.TAMPERED and "not the seal of epoch 0" in report.detail


def test_seal_key_of_another_log(state: Path, tmp_path: Path) -> None:
    vkey = sealed_log(state)
    other = sealed_log(tmp_path / "other")
    assert verify_log(state / "audit", seal_key=vkey).ok
    report = verify_log(state / "audit", seal_key=other)
    assert (report.verdict, report.seq) == (Verdict.TRUNCATED, 0)


def test_crash_between_seal_and_key_evolution(state: Path) -> None:
    audit = write_log(state, 9, SEALED)
    before = (state / "audit" / SEAL_KEY_FILE).read_bytes()
    audit.record("error", {"where": "test", "message": "tenth"})  # triggers the seal of epoch 0
    assert seals(state) == [11]
    audit.close()
    assert len(lines_of(state)) == 12  # nothing after the seal, so close had nothing to seal
    # Put back the epoch-0 key as if the process died right after the seal entry reached disk.
    (state / "audit" / SEAL_KEY_FILE).write_bytes(before)
    audit = write_log(state, 15, SEALED)
    audit.close()
    vkey = parse_verification_key(export_verification_key(state / "audit"))
    report = verify_log(state / "audit", seal_key=vkey)
    assert report.verdict is Verdict.INTACT, report.line()
    assert len(seals(state)) == 3


def test_seal_on_a_timer(state: Path) -> None:
    audit = write_log(state, 1, AuditOptions(seal=True, seal_every_entries=1000, seal_interval_s=0.05))
    deadline = time.monotonic() + 5
    while not seals(state) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert seals(state) == [2]
    audit.close()


def test_export_is_once(state: Path) -> None:
    sealed_log(state)
    with pytest.raises(SigningKeyError, match="exported already"):
        export_verification_key(state / "audit")


def test_verification_key_parser_is_strict() -> None:
    with pytest.raises(SigningKeyError):
        parse_verification_key(b"midbox-audit-seal-verify-1 " + b"a" * 32 + b" " + b"b" * 63)
    with pytest.raises(SigningKeyError):
        parse_verification_key(b"midbox-audit-seal-1 " + b"a" * 32 + b" 000000000000 " + b"b" * 64)
