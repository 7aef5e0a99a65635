"""Reading runs back for people and SIEMs."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from appliance.commands.audit_table import format_run
from hardening.audit import AuditLog, AuditValueError
from hardening.audit.show import RunFilter, iter_runs, parse_since

from .conftest import NO_SEAL, FakeClock, probe_fields


def sample(state: Path) -> None:
    audit = AuditLog(state / "audit", NO_SEAL, clock=FakeClock())  # entry n is at 06:00:00 + (n+1) s
    audit.record("probe.finished", probe_fields(0))
    audit.record(
        "config.accepted", {"config_version": 8, "config_sha256": "c" * 64, "signers": ["a"], "expires": "x"}
    )
    audit.record("probe.finished", {**probe_fields(1), "result_code": 1, "error": "host key changed"})
    audit.record("target.denied", {**probe_fields(2), "reason": "no rule allows ssh to 10.0.0.3"})
    audit.record(
        "credential.used",
        {"alias": "linux-ro", "type": "ssh-password", "job": "j", "target": "t", "topic": "x"},
    )
    audit.close()


def test_runs_carry_config_version_and_results(state: Path) -> None:
    sample(state)
    runs = list(iter_runs(state / "audit", RunFilter()))
    assert [(r.job, r.config_version, r.result) for r in runs] == [
        ("job0000", None, "error 1"),
        ("job0001", 8, "error 1: host key changed"),
        ("job0002", 8, "denied: no rule allows ssh to 10.0.0.3"),
    ]
    row = format_run(runs[1])
    assert "10.0.0.2:22" in row and "SSHCommand" in row and "linux-ro" in row


def test_filters(state: Path) -> None:
    sample(state)
    directory = state / "audit"
    assert [r.job for r in iter_runs(directory, RunFilter(job="job0001"))] == ["job0001"]
    assert [r.job for r in iter_runs(directory, RunFilter(target="10.0.0.3"))] == ["job0002"]
    since = dt.datetime(2026, 11, 25, 6, 0, 3, tzinfo=dt.UTC)
    assert [r.job for r in iter_runs(directory, RunFilter(since=since))] == ["job0001", "job0002"]


def test_since_forms() -> None:
    now = dt.datetime(2026, 11, 25, 12, tzinfo=dt.UTC)
    assert parse_since("2h", now) == dt.datetime(2026, 11, 25, 10, tzinfo=dt.UTC)
    assert parse_since("7d", now) == dt.datetime(2026, 11, 18, 12, tzinfo=dt.UTC)
    assert parse_since("2026-11-25T06:00:00Z", now) == dt.datetime(2026, 11, 25, 6, tzinfo=dt.UTC)
    assert parse_since("2026-11-25", now) == dt.datetime(2026, 11, 25, tzinfo=dt.UTC)
    with pytest.raises(AuditValueError):
        parse_since("yesterday", now)


def test_jobs_after_a_hot_reload_carry_the_new_version(tmp_path: Path) -> None:
    from appliance.config.verify import load_verified_config, try_reload
    from tests.signing.helpers import NOW, make_signed_setup, write_signed_config

    s = make_signed_setup(tmp_path)
    current = load_verified_config(s.config, s.state_dir, NOW)
    audit = AuditLog(tmp_path / "audit", NO_SEAL, clock=FakeClock())
    start = {
        "binary_sha256": "b" * 64,
        "version": "1",
        "config_version": current.version,
        "appliance": "edge-01",
    }
    audit.record("appliance.start", start)
    audit.record("probe.finished", probe_fields(0))
    write_signed_config(s.workstation, s.keys, version=current.version + 1)
    assert try_reload(current, s.config, s.state_dir, NOW, audit).changed  # writes config.reloaded
    audit.record("probe.finished", probe_fields(1))
    audit.close()
    runs = list(iter_runs(tmp_path / "audit", RunFilter()))
    assert [r.config_version for r in runs] == [current.version, current.version + 1]


def test_wide_keeps_long_values_whole(state: Path) -> None:
    audit = AuditLog(state / "audit", NO_SEAL, clock=FakeClock())
    long_error = "host key for 10.0.0.2 changed; re-pin it with midbox hosts pin after checking it"
    audit.record("probe.finished", {**probe_fields(1), "error": long_error})
    audit.close()
    run = next(iter_runs(state / "audit", RunFilter()))
    assert long_error not in format_run(run) and "~" in format_run(run)
    assert long_error in format_run(run, wide=True) and "job0001" in format_run(run, wide=True)
