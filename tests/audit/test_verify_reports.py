"""The whole report an auditor reads, not just the verdict: where, what, and the counts beside it.

Written against the mutants of ``hardening/audit/verify.py`` that survived the audit tests
(``python -m tests.mutation --only audit_verify``): a report that names the wrong entry, the wrong
line or the wrong checkpoint sends the auditor to the wrong place, and a seal or genesis check
that accepts half of what it should is a hole.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from hardening.audit import Verdict, load_or_create_signing_key, sign_checkpoint, verify_log
from hardening.audit._entry import GENESIS_PREV, chain_hash, encode_entry, parse_entry
from hardening.audit._files import log_files

from .conftest import lines_of, rewrite_single
from .test_seal import rewrite_from, sealed_log
from .test_tamper import edit_json, written

Edit = Callable[[list[bytes]], list[bytes]]
LINE = "audit-000001.log line"


def first_entry_relinked(ls: list[bytes]) -> list[bytes]:
    return [edit_json(ls[0], prev="ab" * 32), *ls[1:]]


SCENARIOS: dict[str, tuple[Edit, str, int]] = {
    # name: (the attacker's edit, the report line, how many entries verified before the problem)
    "edited": (
        lambda ls: [*ls[:4], ls[4].replace(b'"result_code":1', b'"result_code":0'), *ls[5:]],
        f"TAMPERED at seq 4: entry 4 was changed: it no longer matches the link in {LINE} 6",
        5,
    ),
    "link": (
        lambda ls: [*ls[:7], edit_json(ls[7], prev="ab" * 32), *ls[8:]],
        f"TAMPERED at seq 7: {LINE} 8: the entry's link to entry 6 was changed",
        7,
    ),
    "seq": (
        lambda ls: [*ls[:6], edit_json(ls[6], seq=60), *ls[7:]],
        f"TAMPERED at seq 6: {LINE} 7: the entry chains correctly but its seq was changed",
        6,
    ),
    "deleted": (
        lambda ls: [*ls[:9], *ls[11:]],
        f"MISSING at seq 9: {LINE} 10: entries 9..10 are missing after entry 8",
        9,
    ),
    "genesis-deleted": (
        lambda ls: ls[2:],
        f"MISSING at seq 0: {LINE} 1: the log begins at entry 2, not 0",
        0,
    ),
    "first-link": (
        first_entry_relinked,
        f"TAMPERED at seq 0: {LINE} 1: the first entry does not chain to the start",
        0,
    ),
    "swapped": (
        lambda ls: [*ls[:5], ls[6], ls[5], *ls[7:]],
        f"REORDERED at seq 5: {LINE} 6: entry 6 comes before entry 5",
        5,
    ),
    "replayed": (
        lambda ls: [*ls[:12], ls[3], *ls[12:]],
        f"REORDERED at seq 3: {LINE} 13: entry 3 appears again after entry 11",
        12,
    ),
    "garbage": (
        lambda ls: [*ls[:5], b"rm -rf /", *ls[5:]],
        f"TAMPERED at seq 5: {LINE} 6 is not a valid audit entry",
        5,
    ),
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_each_attack_is_reported_at_its_entry_with_the_counts_beside_it(state: Path, name: str) -> None:
    edit, line, verified = SCENARIOS[name]
    cp = written(state)
    rewrite_single(state, edit)
    edited = lines_of(state)
    report = verify_log(state / "audit", [cp])
    assert report.line() == line
    assert (report.entries, report.files, report.checkpoints, report.sealed) == (verified, 1, 1, None)
    assert report.log_id == (cp.log_id if verified else None)
    assert report.head == (parse_entry(edited[verified - 1]).hash.hex() if verified else None)
    assert not report.ok


def test_an_intact_log_reports_its_counts_and_an_ignored_torn_tail(state: Path) -> None:
    cp = written(state)
    report = verify_log(state / "audit", [cp])
    assert report.line() == "INTACT: 21 entries in 1 file(s), 1 checkpoint(s) matched"
    assert (report.log_id, report.head, report.ignored_tail_bytes) == (cp.log_id, cp.head, 0)
    path = log_files(state / "audit")[0][1]
    with path.open("ab") as f:
        f.write(b'{"seq":21,"torn')
    report = verify_log(state / "audit", [cp])
    assert report.line() == (
        "INTACT: 21 entries in 1 file(s), 1 checkpoint(s) matched; ignored an incomplete last line of 15 bytes"
    )
    assert report.ignored_tail_bytes == 15 and report.ok


def test_the_truncation_report_names_the_right_checkpoint(state: Path) -> None:
    whole = written(state)
    small = dataclasses.replace(whole, size=12, time="2026-11-25T06:30:00.000000Z")
    mid = dataclasses.replace(whole, size=17, time="2026-11-25T06:45:00.000000Z")
    # Heads of the shorter checkpoints are not checked here: the log ends before each of them.
    rewrite_single(state, lambda ls: ls[:10])
    report = verify_log(state / "audit", [whole, mid, small])
    assert report.line() == (
        "TRUNCATED at seq 10: the checkpoint of 2026-11-25T06:30:00.000000Z attests 12 entries; "
        "the log ends after 10"
    )
    for _, path in log_files(state / "audit"):
        path.unlink()
    report = verify_log(state / "audit", [small, whole, mid])
    assert report.line() == (
        f"TRUNCATED at seq 0: the checkpoint of {whole.time} attests 21 entries; the log is gone"
    )
    assert (
        verify_log(state / "audit").line() == f"MISSING at seq 0: there is no audit log in {state / 'audit'}"
    )


def test_a_rewritten_chain_is_reported_against_the_checkpoint_range(state: Path) -> None:
    cp = written(state)

    def rewrite(ls: list[bytes]) -> list[bytes]:
        out, prev = ls[:10], parse_entry(ls[9]).hash
        for raw in ls[10:]:
            e = parse_entry(raw)
            fields = {**e.fields, "result_code": 0} if e.seq == 10 else dict(e.fields)
            line = encode_entry(e.seq, e.time, prev, e.event, json.dumps(fields, separators=(",", ":")))
            out.append(line)
            prev = chain_hash(prev, line)
        return out

    rewrite_single(state, rewrite)
    assert verify_log(state / "audit", [cp]).line() == (
        f"TAMPERED at seq 20: entries 0..20 do not hash to the head signed in the checkpoint of {cp.time}; "
        "an entry in that range was changed or the chain was rewritten"
    )


def relinked(lines: list[bytes], at: int, event: str | None, fields: dict[str, object]) -> list[bytes]:
    """Entry ``at`` with another event or fields, and every later link recomputed, as an insider would."""
    out = lines[:at]
    prev = parse_entry(out[-1]).hash if out else GENESIS_PREV
    for raw in lines[at:]:
        e = parse_entry(raw)
        name, body = (event or e.event, fields) if e.seq == at else (e.event, dict(e.fields))
        line = encode_entry(e.seq, e.time, prev, name, json.dumps(body, separators=(",", ":")))
        out.append(line)
        prev = chain_hash(prev, line)
    return out


@pytest.mark.parametrize("change", ["event", "log_id"])
def test_a_log_must_begin_with_a_genesis_entry_that_names_the_log(state: Path, change: str) -> None:
    written(state)
    genesis = parse_entry(lines_of(state)[0])
    assert genesis.event == "audit.genesis"
    # The genesis renamed, or without its log_id, each on its own and with the chain relinked after it.
    if change == "event":
        edit = relinked(lines_of(state), 0, "error", dict(genesis.fields))
    else:
        edit = relinked(lines_of(state), 0, None, {k: v for k, v in genesis.fields.items() if k != "log_id"})
    rewrite_single(state, lambda ls: edit)
    assert verify_log(state / "audit").line() == (
        f"TAMPERED at seq 0: {LINE} 1: the log does not begin with its genesis entry"
    )


def test_a_seal_that_claims_another_size_is_refused(state: Path) -> None:
    vkey = sealed_log(state)
    lines = lines_of(state)
    at = next(i for i, raw in enumerate(lines) if parse_entry(raw).event == "audit.seal")
    seal = parse_entry(lines[at])
    # Keep epoch and MAC, change only the size the seal claims, and relink the chain after it.
    out = relinked(lines, at, None, {**seal.fields, "size": seal.seq + 1})
    rewrite_single(state, lambda ls: out)
    report = verify_log(state / "audit", seal_key=vkey)
    assert report.line() == (
        f"TAMPERED at seq {seal.seq}: the seal at entry {seal.seq} is not the seal of epoch 0; "
        "seals were removed, replayed or forged"
    )
    assert report.sealed == 0


def test_checkpoints_of_one_history_at_two_sizes_are_not_a_fork_and_each_range_is_checked(
    state: Path,
) -> None:
    whole = written(state)
    key = load_or_create_signing_key(state)
    lines = lines_of(state)
    prefix = sign_checkpoint(
        key, whole.log_id, 12, parse_entry(lines[11]).hash.hex(), "2026-11-25T06:30:00.000000Z"
    )
    assert verify_log(state / "audit", [prefix, whole]).ok
    # The prefix still matches after entry 15 is rewritten; the report names the range after it.
    rewrite_single(state, lambda ls: relinked(ls, 15, None, {**parse_entry(ls[15]).fields, "result_code": 9}))
    assert verify_log(state / "audit", [whole, prefix]).line() == (
        f"TAMPERED at seq 20: entries 12..20 do not hash to the head signed in the checkpoint of {whole.time}; "
        "an entry in that range was changed or the chain was rewritten"
    )
    forked = dataclasses.replace(whole, head="00" * 32)
    report = verify_log(state / "audit", [whole, prefix, forked])
    assert (report.verdict, report.checkpoints) == (Verdict.FORKED, 3)


def test_a_sealed_range_rewritten_is_reported_with_the_range_the_seal_covers(state: Path) -> None:
    vkey = sealed_log(state)
    rewrite_single(state, lambda ls: rewrite_from(ls, 5, keep_seals=True))
    assert verify_log(state / "audit", seal_key=vkey).line() == (
        "TAMPERED at seq 11: entries 0..10 do not match the seal of epoch 0; they were changed after they were sealed"
    )


def test_a_sealed_log_with_a_torn_tail_reports_both(state: Path) -> None:
    vkey = sealed_log(state)
    path = log_files(state / "audit")[-1][1]
    with path.open("ab") as f:
        f.write(b'{"torn')
    report = verify_log(state / "audit", seal_key=vkey)
    assert report.ok and "; ignored an incomplete last line of 6 bytes; " in report.detail
    assert "entries sealed by" in report.detail


def test_a_missing_entry_is_missing_even_when_a_later_one_is_replayed(state: Path) -> None:
    written(state)
    rewrite_single(state, lambda ls: [*ls[:5], *ls[6:9], ls[6], *ls[9:]])
    assert (
        verify_log(state / "audit").line()
        == f"MISSING at seq 5: {LINE} 6: entries 5..5 are missing after entry 4"
    )


def test_an_entry_longer_than_the_verifier_reads_is_tampering(state: Path) -> None:
    written(state)
    lines = lines_of(state)
    last = parse_entry(lines[-1])

    def entry(total: int) -> bytes:
        def make(n: int) -> bytes:
            fields = json.dumps({"message": "x" * n, "where": "y"}, separators=(",", ":"))
            return encode_entry(last.seq + 1, last.time, last.hash, "error", fields)

        return make(total - len(make(0)))

    # readline(max + 2) sees the newline of a 65_537-byte entry; one byte more is oversized.
    for size, ok in ((65_537, True), (65_538, False)):
        line = entry(size)
        assert len(line) == size
        rewrite_single(state, lambda ls, line=line: [*lines, line])
        assert verify_log(state / "audit").ok is ok, size
