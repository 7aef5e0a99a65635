"""The audit inbox: another process hands job events to the holder of the log; hostile files are refused.

The end-to-end case (``midbox creds test`` while ``midbox run`` holds the log) is in
tests/probes/test_creds_test.py; these drive ``drain`` against a real log directly.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from hardening.audit import AuditLogBusyError, Verdict, audit_dir, open_audit_log, verify_log
from hardening.audit.errors import AuditValueError
from hardening.audit.inbox import MAX_INBOX_FILE_BYTES, drain, inbox_dir, submit, waiting

STARTED = (
    "probe.started",
    {"job": "j" * 32, "topic": "SNMP", "target": "10.0.0.1", "port": 161, "credential": "c"},
)


def entries(state: Path) -> list[dict[str, object]]:
    """What was recorded, without the log's own genesis and seal entries."""
    out: list[dict[str, object]] = []
    for segment in sorted(audit_dir(state).glob("audit-*.log")):
        out += [json.loads(line) for line in segment.read_text().splitlines()]
    return [e for e in out if e["event"] not in ("audit.genesis", "audit.seal")]


def drop(state: Path, name: str, data: bytes) -> Path:
    inbox_dir(state).mkdir(parents=True, exist_ok=True)
    path = inbox_dir(state) / name
    path.write_bytes(data)
    return path


def test_the_holder_records_what_another_process_hands_over(state_dir: Path) -> None:
    log = open_audit_log(state_dir)
    try:
        with pytest.raises(AuditLogBusyError):  # why the inbox exists: one writer holds the log
            open_audit_log(state_dir)
        inbox_id = submit(state_dir, [STARTED], by="creds test")
        assert waiting(state_dir, inbox_id)
        assert drain(state_dir, log) == 1
        assert not waiting(state_dir, inbox_id)
        assert drain(state_dir, log) == 0  # recorded once
    finally:
        log.close()
    [entry] = [e for e in entries(state_dir) if e["event"] == "probe.started"]
    assert entry["fields"] == {**STARTED[1], "by": "creds test", "inbox": inbox_id}
    assert verify_log(audit_dir(state_dir), []).verdict is Verdict.INTACT


def test_submit_refuses_what_could_not_be_recorded(state_dir: Path) -> None:
    with pytest.raises(AuditValueError, match="cannot go through the audit inbox"):
        submit(state_dir, [("quarantine.off", {"reason": "r", "by": "me"})], by="x")
    with pytest.raises(AuditValueError, match="lacks field"):
        submit(state_dir, [("probe.started", {"job": "j"})], by="x")


GOOD = json.dumps({"by": "x", "events": [list(STARTED)]}).encode()


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"{not json", "audit inbox file"),
        (GOOD[:-1] + b', "extra": 1}', "unknown key 'extra'"),
        (b'{"by": "x", "by": "y", "events": []}', "duplicate"),
        (json.dumps({"by": "", "events": []}).encode(), "'by'"),
        (json.dumps({"by": "x", "events": [["appliance.start", {}]]}).encode(), "cannot come through"),
        (
            json.dumps({"by": "x", "events": [["audit.seal", {"epoch": 1, "size": 1, "mac": "0"}]]}).encode(),
            "cannot come",
        ),
        (json.dumps({"by": "x", "events": [["probe.started", {"job": "j"}]]}).encode(), "lacks field"),
        (json.dumps({"by": "x", "events": [STARTED[0]]}).encode(), "[name, {fields}]"),
        (json.dumps({"by": "x", "events": [list(STARTED)] * 65}).encode(), "at most 64"),
        (b'{"by": "x", "events": [' + b" " * MAX_INBOX_FILE_BYTES + b"]}", "bytes"),
    ],
)
def test_a_hostile_file_is_refused_audited_and_removed(state_dir: Path, data: bytes, reason: str) -> None:
    path = drop(state_dir, "a" * 32 + ".json", data)
    log = open_audit_log(state_dir)
    try:
        assert drain(state_dir, log) == 0
    finally:
        log.close()
    assert not path.exists()
    [refused] = [e for e in entries(state_dir) if e["event"] == "audit.inbox_refused"]
    assert refused["fields"]["inbox"] == "a" * 32 and reason in str(refused["fields"]["reason"])
    assert [e["event"] for e in entries(state_dir)] == ["audit.inbox_refused"]


def test_a_secret_named_field_is_refused_per_event_and_the_rest_recorded(state_dir: Path) -> None:
    bad = ["probe.started", {**STARTED[1], "password": "hunter2"}]
    drop(state_dir, "b" * 32 + ".json", json.dumps({"by": "x", "events": [bad, list(STARTED)]}).encode())
    log = open_audit_log(state_dir)
    try:
        assert drain(state_dir, log) == 1
    finally:
        log.close()
    text = "".join(p.read_text() for p in audit_dir(state_dir).glob("audit-*.log"))
    assert "hunter2" not in text
    assert [e["event"] for e in entries(state_dir)] == ["audit.inbox_refused", "probe.started"]


def test_links_and_other_names_in_the_inbox_are_not_followed(state_dir: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside.json"
    outside.write_bytes(GOOD)
    inbox_dir(state_dir).mkdir(parents=True)
    os.symlink(outside, inbox_dir(state_dir) / ("c" * 32 + ".json"))
    stray = drop(state_dir, "notes.json", GOOD)
    log = open_audit_log(state_dir)
    try:
        assert drain(state_dir, log) == 0
    finally:
        log.close()
    assert outside.exists() and stray.exists()  # the link is dropped, its target and strays are left
    assert [e["event"] for e in entries(state_dir)] == ["audit.inbox_refused"]
