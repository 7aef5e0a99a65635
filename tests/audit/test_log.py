"""The writer: chain continuity, rotation, group commit, recovery, threads, and what it refuses."""

from __future__ import annotations

import datetime as dt
import enum
import ipaddress
import json
import os
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path, PurePosixPath

import pytest

from appliance.interfaces import AuditSink
from hardening.audit import (
    AuditLog,
    AuditLogBusyError,
    AuditLogDamagedError,
    AuditOptions,
    AuditValueError,
    AuditWriteError,
    Verdict,
    open_audit_log,
    verify_log,
)
from hardening.audit._entry import parse_entry
from hardening.audit._files import log_files

from .conftest import NO_SEAL, lines_of, probe_fields, write_log


def as_sink(audit: AuditLog) -> AuditSink:
    return audit  # mypy checks that AuditLog satisfies the probes' AuditSink protocol structurally


def test_genesis_then_entries_chain_and_reopen_continues(state: Path) -> None:
    audit = write_log(state, 5)
    log_id, head = audit.log_id, audit.head
    audit.close()
    again = open_audit_log(state, NO_SEAL)
    assert (again.log_id, again.size, again.head) == (log_id, 6, head)
    as_sink(again).record("error", {"where": "test", "message": "after reopen"})
    again.close()
    entries = [parse_entry(raw) for raw in lines_of(state)]
    assert [e.seq for e in entries] == list(range(7))
    assert entries[0].event == "audit.genesis" and entries[0].fields["log_id"] == log_id
    assert entries[6].prev.hex() == head
    assert verify_log(state / "audit").verdict is Verdict.INTACT


def test_files_are_private(state: Path) -> None:
    write_log(state, 1).close()
    assert stat.S_IMODE((state / "audit").stat().st_mode) == 0o700
    for _, path in log_files(state / "audit"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_rotation_keeps_one_chain(state: Path) -> None:
    options = AuditOptions(seal=False, max_entry_bytes=4096, rotate_bytes=8192)
    audit = write_log(state, 100, options)
    audit.close()
    files = log_files(state / "audit")
    assert len(files) > 3
    assert all(path.stat().st_size <= 8192 for _, path in files)
    audit = AuditLog(state / "audit", options)
    audit.record("error", {"where": "test", "message": "after reopen of a rotated log"})
    audit.close()
    report = verify_log(state / "audit")
    assert (
        report.verdict is Verdict.INTACT
        and report.entries == 102
        and report.files == len(log_files(state / "audit"))
    )


def test_second_writer_is_refused(state: Path) -> None:
    audit = write_log(state, 1)
    with pytest.raises(AuditLogBusyError):
        open_audit_log(state, NO_SEAL)
    audit.close()
    open_audit_log(state, NO_SEAL).close()


def test_threads_share_one_log(state: Path) -> None:
    audit = open_audit_log(state, AuditOptions(seal=False, fsync_max_pending=64))
    per_thread, threads = 300, 8

    def work(t: int) -> None:
        for i in range(per_thread):
            audit.record("probe.finished", probe_fields(t * per_thread + i))

    pool = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    audit.close()
    report = verify_log(state / "audit")
    assert report.verdict is Verdict.INTACT and report.entries == 1 + per_thread * threads
    jobs = {parse_entry(raw).fields.get("job") for raw in lines_of(state)[1:]}
    assert len(jobs) == per_thread * threads


def counting(calls: list[int], real: Callable[[int], None]) -> Callable[[int], None]:
    def fsync(fd: int) -> None:
        calls.append(fd)
        real(fd)

    return fsync


def test_group_commit_batches_fsync(state: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", counting(calls, real))
    audit = open_audit_log(state, AuditOptions(seal=False, fsync_interval_s=5.0, fsync_max_pending=50))
    calls.clear()
    for i in range(500):
        audit.record("probe.finished", probe_fields(i))
    assert len(calls) == 10  # one per 50 entries, not one per entry
    audit.record("error", {"where": "test", "message": "pending"})
    assert len(calls) == 10
    audit.close()  # the last, partial batch is synced on close
    assert len(calls) == 11


def test_timer_syncs_a_lone_entry(state: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = os.fsync
    audit = open_audit_log(state, AuditOptions(seal=False, fsync_interval_s=0.02, fsync_max_pending=1000))
    monkeypatch.setattr(os, "fsync", counting(calls, real))
    audit.record("error", {"where": "test", "message": "lonely"})
    deadline = time.monotonic() + 5
    while not calls and time.monotonic() < deadline:
        time.sleep(0.005)
    assert calls, "no fsync within the interval"
    audit.close()


def test_flush_syncs_now(state: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = os.fsync
    audit = open_audit_log(state, AuditOptions(seal=False, fsync_interval_s=5.0, fsync_max_pending=1000))
    monkeypatch.setattr(os, "fsync", counting(calls, real))
    audit.record("error", {"where": "test", "message": "x"})
    audit.flush()
    assert len(calls) == 1
    audit.flush()
    assert len(calls) == 1  # nothing pending, nothing to do
    audit.close()


def test_torn_tail_from_a_crash_is_cut_and_recorded(state: Path) -> None:
    write_log(state, 3).close()
    path = log_files(state / "audit")[0][1]
    with open(path, "ab") as fh:
        fh.write(b'{"seq":4,"time":"2026-')
    audit = open_audit_log(state, NO_SEAL)
    audit.close()
    last = parse_entry(lines_of(state)[-1])
    assert last.event == "audit.recovered" and last.fields["dropped_bytes"] == 22
    assert verify_log(state / "audit").verdict is Verdict.INTACT


def test_damaged_last_entry_refuses_to_open(state: Path) -> None:
    write_log(state, 3).close()
    path = log_files(state / "audit")[0][1]
    with open(path, "ab") as fh:
        fh.write(b"not an entry\n")
    with pytest.raises(AuditLogDamagedError):
        open_audit_log(state, NO_SEAL)


def test_empty_newest_file_after_rotation_crash(state: Path) -> None:
    write_log(state, 3).close()
    (state / "audit" / "audit-000002.log").write_bytes(b"")
    audit = open_audit_log(state, NO_SEAL)
    audit.record("error", {"where": "test", "message": "x"})
    audit.close()
    assert verify_log(state / "audit").entries == 5


class Color(enum.Enum):
    RED = "red"


def test_values_are_converted(state: Path) -> None:
    audit = open_audit_log(state, AuditOptions(seal=False, max_string_chars=10))
    audit.record(
        "error",
        {
            "where": PurePosixPath("/a/b"),
            "message": "x" * 25,
            "when": dt.datetime(2026, 1, 1, 12, tzinfo=dt.timezone(dt.timedelta(hours=2))),
            "color": Color.RED,
            "addr": ipaddress.ip_address("10.0.0.1"),
            "nested": {"list": (1, 2.5, None, True)},
        },
    )
    audit.close()
    fields = parse_entry(lines_of(state)[-1]).fields
    assert fields == {
        "where": "/a/b",
        "message": "xxxxxxxxxx...[+15 chars]",
        "when": "2026-01-01T10:00:00.000000Z",
        "color": "red",
        "addr": "10.0.0.1",
        "nested": {"list": [1, 2.5, None, True]},
    }


@pytest.mark.parametrize(
    ("event", "fields", "message"),
    [
        ("error", {"where": "x", "message": b"raw"}, "bytes"),
        ("error", {"where": "x", "message": float("nan")}, "NaN"),
        ("error", {"where": "x", "message": object()}, "object"),
        ("error", {"where": "x", "message": "m", "password": "hunter2"}, "secret"),
        ("error", {"where": "x", "message": "m", "detail": {"Secret": "s"}}, "secret"),
        ("error", {"where": "x", "message": "m", "d": {1: "int key"}}, "strings"),
        ("error", {"where": "x", "message": "m", "when": dt.datetime(2026, 1, 1)}, "timezone"),
        ("error", {"where": "x"}, "lacks"),
        ("no.such.event", {}, "not in"),
        ("Bad Name", {}, "not valid"),
        ("audit.genesis", {"log_id": "x", "format": "y"}, "written by the log"),
        ("error", {"where": "x", "message": "m", "deep": [[[[[[[[[["deep"]]]]]]]]]]}, "deeper"),
    ],
)
def test_refused_values(state: Path, event: str, fields: dict[str, object], message: str) -> None:
    audit = open_audit_log(state, NO_SEAL)
    with pytest.raises(AuditValueError, match=message):
        audit.record(event, fields)
    audit.close()
    assert len(lines_of(state)) == 1  # nothing but the genesis was written


def test_oversized_entry_is_refused(state: Path) -> None:
    audit = open_audit_log(state, AuditOptions(seal=False, max_entry_bytes=4096))
    with pytest.raises(AuditValueError, match="exceeds"):
        audit.record("error", {"where": "x", "message": "m", "many": ["y" * 100] * 50})
    audit.close()


def test_entries_are_canonical_json_lines(state: Path) -> None:
    write_log(state, 2).close()
    for raw in lines_of(state):
        obj = json.loads(raw)
        assert list(obj) == ["seq", "time", "prev", "event", "fields"]
        assert raw.isascii()


def test_closed_log_refuses_records(state: Path) -> None:
    audit = write_log(state, 1)
    audit.close()
    audit.close()  # idempotent
    with pytest.raises(Exception, match="closed"):
        audit.record("error", {"where": "x", "message": "m"})


def test_write_failure_stops_the_log_and_reopen_recovers(
    state: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    audit = write_log(state, 2)
    real_write = os.write

    def half_then_full(fd: int, data: bytes | memoryview) -> int:
        monkeypatch.setattr(os, "write", failing)
        return real_write(fd, bytes(data)[:10])  # a torn line, then the disk is full

    def failing(fd: int, data: bytes | memoryview) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", half_then_full)
    with pytest.raises(AuditWriteError, match="free disk space"):
        audit.record("error", {"where": "test", "message": "lost"})
    monkeypatch.setattr(os, "write", real_write)
    with pytest.raises(AuditWriteError, match="reopened"):
        audit.record("error", {"where": "test", "message": "refused"})
    audit.close()
    audit = open_audit_log(state, NO_SEAL)
    audit.close()
    entries = [parse_entry(raw) for raw in lines_of(state)]
    assert entries[-1].event == "audit.recovered" and entries[-1].fields["dropped_bytes"] == 10
    assert verify_log(state / "audit").verdict is Verdict.INTACT
