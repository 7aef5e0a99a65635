"""Helpers that write a real log through AuditLog and then edit its files as an attacker would."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import strategies as st

from hardening.audit import AuditLog, AuditOptions, Checkpoint, load_or_create_signing_key
from hardening.audit._files import log_files

# The chain tests count entries exactly; sealing (which adds entries) has its own tests.
NO_SEAL = AuditOptions(seal=False)


def probe_fields(i: int) -> dict[str, object]:
    return {
        "job": f"job{i:04d}",
        "topic": "SSHCommand",
        "target": f"10.0.0.{i % 250 + 1}",
        "port": 22,
        "credential": "linux-ro",
        "result_code": 0 if i % 3 else 1,
        "bytes_in": 100 + i,
        "bytes_out": 2000 + i,
        "duration_ms": 10.5 + i,
        "result_sha256": f"{i:064x}",
    }


class FakeClock:
    def __init__(self) -> None:
        self.now = dt.datetime(2026, 11, 25, 6, 0, tzinfo=dt.UTC)

    def __call__(self) -> dt.datetime:
        self.now += dt.timedelta(seconds=1)
        return self.now


def write_log(state: Path, count: int, options: AuditOptions | None = None) -> AuditLog:
    """Open a log in STATE/audit and write ``count`` probe.finished entries after the genesis."""
    audit = AuditLog(state / "audit", options or NO_SEAL, clock=FakeClock())
    for i in range(count):
        audit.record("probe.finished", probe_fields(i))
    return audit


def lines_of(state: Path) -> list[bytes]:
    out: list[bytes] = []
    for _, path in log_files(state / "audit"):
        out.extend(path.read_bytes().splitlines())
    return out


def rewrite_single(state: Path, edit: Callable[[list[bytes]], list[bytes]]) -> None:
    """Apply ``edit`` to the lines of a one-file log."""
    files = log_files(state / "audit")
    assert len(files) == 1
    path = files[0][1]
    before = path.read_bytes().splitlines()
    lines = edit(list(before))
    assert lines != before, "the edit changed nothing; the test would prove nothing"
    path.write_bytes(b"".join(line + b"\n" for line in lines))


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def signed(state: Path) -> Iterator[Callable[[AuditLog], Checkpoint]]:
    key = load_or_create_signing_key(state)

    def checkpoint(audit: AuditLog) -> Checkpoint:
        return audit.checkpoint(key)

    yield checkpoint


LINE_EDITS = ("byte", "drop", "swap", "copy", "non-ascii")


def draw_line_edit(data: st.DataObject, lines: list[bytes], how: str) -> None:
    """Apply one edit of kind ``how`` (one of LINE_EDITS) to ``lines`` in place, where ``data`` draws."""
    at = data.draw(st.integers(0, len(lines) - 1))
    if how == "drop":
        del lines[at]
    elif how == "swap":
        other = data.draw(st.integers(0, len(lines) - 1))
        lines[at], lines[other] = lines[other], lines[at]
    elif how == "copy":
        lines.insert(at, lines[data.draw(st.integers(0, len(lines) - 1))])
    else:
        raw = bytearray(lines[at])
        where = data.draw(st.integers(0, len(raw) - 1))
        raw[where] = 0xE9 if how == "non-ascii" else data.draw(st.sampled_from(b'"\\{}[],:019af.-'))
        lines[at] = bytes(raw)
