"""Attack scenarios: each edit an attacker with host access could make, and the verdict it gets."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from hardening.audit import (
    AuditOptions,
    Checkpoint,
    Verdict,
    load_or_create_signing_key,
    sign_checkpoint,
    verify_log,
)
from hardening.audit._entry import chain_hash, encode_entry, parse_entry
from hardening.audit._files import log_files

from .conftest import lines_of, rewrite_single, write_log

N = 20  # probe entries; with the genesis the log holds seq 0..20


def written(state: Path) -> Checkpoint:
    """Write N entries, close, and return a checkpoint of the whole log (exported before tampering)."""
    audit = write_log(state, N)
    audit.close()
    key = load_or_create_signing_key(state)
    return sign_checkpoint(key, audit.log_id, audit.size, audit.head, "2026-11-25T07:00:00.000000Z")


def verdict(state: Path, *checkpoints: Checkpoint) -> tuple[Verdict, int | None]:
    report = verify_log(state / "audit", checkpoints)
    return report.verdict, report.seq


def edit_json(line: bytes, **changes: object) -> bytes:
    obj = json.loads(line)
    for key, value in changes.items():
        if key in obj:
            obj[key] = value
        else:
            obj["fields"][key] = value
    return json.dumps(obj, separators=(",", ":")).encode()


def test_untouched_log_is_intact(state: Path) -> None:
    cp = written(state)
    report = verify_log(state / "audit", [cp])
    assert report.verdict is Verdict.INTACT and report.entries == N + 1 and report.head == cp.head


def test_edited_field_is_tampered_at_that_entry(state: Path) -> None:
    written(state)
    # Entry 4 is the failed run (result_code 1); make it look like a success.
    rewrite_single(
        state, lambda ls: [*ls[:4], ls[4].replace(b'"result_code":1', b'"result_code":0'), *ls[5:]]
    )
    assert verdict(state) == (Verdict.TAMPERED, 4)


def test_edited_target_is_tampered(state: Path) -> None:
    written(state)
    rewrite_single(state, lambda ls: [*ls[:8], edit_json(ls[8], target="10.66.6.6"), *ls[9:]])
    assert verdict(state) == (Verdict.TAMPERED, 8)


def test_edited_link_is_tampered_at_the_entry_holding_it(state: Path) -> None:
    written(state)
    rewrite_single(state, lambda ls: [*ls[:7], edit_json(ls[7], prev="ab" * 32), *ls[8:]])
    assert verdict(state) == (Verdict.TAMPERED, 7)


def test_edited_seq_is_tampered(state: Path) -> None:
    written(state)
    rewrite_single(state, lambda ls: [*ls[:6], edit_json(ls[6], seq=60), *ls[7:]])
    assert verdict(state) == (Verdict.TAMPERED, 6)


def test_deleted_entry_is_missing(state: Path) -> None:
    written(state)
    rewrite_single(state, lambda ls: [*ls[:9], *ls[10:]])
    assert verdict(state) == (Verdict.MISSING, 9)


def test_deleted_run_of_entries_is_missing(state: Path) -> None:
    written(state)
    rewrite_single(state, lambda ls: [*ls[:4], *ls[9:]])
    assert verdict(state) == (Verdict.MISSING, 4)


def test_deleted_genesis_is_missing(state: Path) -> None:
    written(state)
    rewrite_single(state, lambda ls: ls[1:])
    assert verdict(state) == (Verdict.MISSING, 0)


def test_swapped_entries_are_reordered(state: Path) -> None:
    written(state)
    rewrite_single(state, lambda ls: [*ls[:5], ls[6], ls[5], *ls[7:]])
    assert verdict(state) == (Verdict.REORDERED, 5)


def test_replayed_entry_is_reordered(state: Path) -> None:
    written(state)
    rewrite_single(state, lambda ls: [*ls[:12], ls[3], *ls[12:]])
    assert verdict(state) == (Verdict.REORDERED, 3)


def test_garbage_line_is_tampered(state: Path) -> None:
    written(state)
    rewrite_single(state, lambda ls: [*ls[:5], b"rm -rf / # nothing to see", *ls[5:]])
    assert verdict(state) == (Verdict.TAMPERED, 5)


def test_non_ascii_byte_is_tampered(state: Path) -> None:
    written(state)
    rewrite_single(state, lambda ls: [*ls[:9], ls[9].replace(b"SSHCommand", "SSHCömmand".encode()), *ls[10:]])
    assert verdict(state) == (Verdict.TAMPERED, 9)


def test_inserted_wellformed_entry_is_detected(state: Path) -> None:
    written(state)

    def insert(ls: list[bytes]) -> list[bytes]:
        before = parse_entry(ls[4])
        forged = encode_entry(5, before.time, before.hash, "error", '{"message":"x","where":"y"}')
        return [*ls[:5], forged, *ls[5:]]

    rewrite_single(state, insert)
    assert verdict(state) == (Verdict.REORDERED, 5)  # the real entry 5 then appears a second time


def test_chain_rewritten_by_attacker_is_tampered_against_checkpoint(state: Path) -> None:
    cp = written(state)

    def rewrite(ls: list[bytes]) -> list[bytes]:
        # Change entry 10 and recompute every later link, as someone who knows the format would.
        out = ls[:10]
        prev = parse_entry(out[-1]).hash
        for raw in ls[10:]:
            e = parse_entry(raw)
            fields = dict(e.fields)
            if e.seq == 10:
                fields["result_code"] = 0
            line = encode_entry(e.seq, e.time, prev, e.event, json.dumps(fields, separators=(",", ":")))
            out.append(line)
            prev = chain_hash(prev, line)
        return out

    rewrite_single(state, rewrite)
    assert verdict(state) == (
        Verdict.INTACT,
        None,
    )  # the chain alone cannot tell: that is what anchors are for
    assert verdict(state, cp) == (Verdict.TAMPERED, N)


def test_edited_last_entry_is_tampered_against_checkpoint(state: Path) -> None:
    cp = written(state)
    rewrite_single(state, lambda ls: [*ls[:-1], edit_json(ls[-1], target="10.66.6.6")])
    assert verdict(state, cp) == (Verdict.TAMPERED, N)


def test_cut_tail_is_truncated_against_checkpoint(state: Path) -> None:
    cp = written(state)
    rewrite_single(state, lambda ls: ls[:15])
    assert verdict(state, cp) == (Verdict.TRUNCATED, 15)


def test_removed_newline_of_last_entry_is_truncated(state: Path) -> None:
    cp = written(state)
    path = log_files(state / "audit")[0][1]
    path.write_bytes(path.read_bytes()[:-1])
    assert verdict(state, cp) == (Verdict.TRUNCATED, N)


def test_deleted_log_is_truncated_against_checkpoint(state: Path) -> None:
    cp = written(state)
    for _, path in log_files(state / "audit"):
        path.unlink()
    assert verdict(state) == (Verdict.MISSING, 0)
    assert verdict(state, cp) == (Verdict.TRUNCATED, 0)


def test_deleted_log_replaced_by_a_fresh_one_is_truncated(state: Path) -> None:
    cp = written(state)
    for _, path in log_files(state / "audit"):
        path.unlink()
    write_log(state, 30).close()  # the appliance restarted and began a new log, longer than the old one
    report = verify_log(state / "audit", [cp])
    assert (report.verdict, report.seq) == (Verdict.TRUNCATED, 0)
    assert cp.log_id in report.detail


def test_two_checkpoints_of_different_histories_are_forked(state: Path) -> None:
    cp = written(state)
    key = load_or_create_signing_key(state)
    other = sign_checkpoint(key, cp.log_id, cp.size, "ee" * 32, "2026-11-25T08:00:00.000000Z")
    assert verdict(state, cp, other) == (Verdict.FORKED, N)


def test_checkpoint_matching_an_earlier_prefix_still_checks(state: Path) -> None:
    audit = write_log(state, 10)
    key = load_or_create_signing_key(state)
    early = sign_checkpoint(key, audit.log_id, audit.size, audit.head, "2026-11-25T07:00:00.000000Z")
    for i in range(10):
        audit.record("error", {"where": "test", "message": f"m{i}"})
    audit.close()
    assert verdict(state, early) == (Verdict.INTACT, None)
    rewrite_single(state, lambda ls: [*ls[:3], edit_json(ls[3], job="other"), *ls[4:]])
    assert verdict(state, early) == (Verdict.TAMPERED, 3)


def test_flipped_byte_anywhere_is_detected_with_a_checkpoint(state: Path) -> None:
    cp = written(state)
    path = log_files(state / "audit")[0][1]
    original = path.read_bytes()
    for pos in range(0, len(original), 37):
        flipped = bytearray(original)
        flipped[pos] ^= 0x01
        path.write_bytes(bytes(flipped))
        assert verdict(state, cp)[0] is not Verdict.INTACT, f"flip at byte {pos} went unnoticed"
    path.write_bytes(original)
    assert verdict(state, cp) == (Verdict.INTACT, None)


def rotated(state: Path) -> list[tuple[int, Path]]:
    audit = write_log(state, 120, AuditOptions(seal=False, max_entry_bytes=4096, rotate_bytes=8192))
    audit.close()
    files = log_files(state / "audit")
    assert len(files) >= 3
    assert verify_log(state / "audit").verdict is Verdict.INTACT
    return files


def first_seq(path: Path) -> int:
    return parse_entry(path.read_bytes().splitlines()[0]).seq


def test_deleted_middle_file_is_missing(state: Path) -> None:
    files = rotated(state)
    gone = files[1][1]
    seq = first_seq(gone)
    gone.unlink()
    assert verdict(state) == (Verdict.MISSING, seq)


def test_deleted_first_file_is_missing(state: Path) -> None:
    files = rotated(state)
    files[0][1].unlink()
    assert verdict(state) == (Verdict.MISSING, 0)


def test_swapped_files_are_reordered(state: Path) -> None:
    files = rotated(state)
    a, b = files[1][1], files[2][1]
    seq = first_seq(a)
    tmp = a.with_name("swap")
    os.replace(a, tmp)
    os.replace(b, a)
    os.replace(tmp, b)
    assert verdict(state) == (Verdict.REORDERED, seq)


def test_torn_line_inside_an_older_file_is_tampered(state: Path) -> None:
    files = rotated(state)
    path = files[0][1]
    data = path.read_bytes()
    path.write_bytes(data[:-10])
    last_seq = len(data.splitlines()) - 1
    assert verdict(state) == (Verdict.TAMPERED, last_seq)


@pytest.mark.parametrize("cut", [1, 40])
def test_torn_last_line_is_not_counted(state: Path, cut: int) -> None:
    written(state)
    path = log_files(state / "audit")[0][1]
    path.write_bytes(path.read_bytes()[:-cut])
    report = verify_log(state / "audit")
    assert report.verdict is Verdict.INTACT and report.entries == N and report.ignored_tail_bytes > 0
    assert len(lines_of(state)) == N + 1
