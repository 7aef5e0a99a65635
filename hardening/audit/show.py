"""Read the log back as runs: one typed row per finished or denied probe, for people and for a SIEM.

This does not verify the chain (``verify_log`` does); rows come straight from the entries. Laying
the rows out as a table is the CLI's job (``appliance/commands/audit_table.py``).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from hardening.audit import _entry, _files
from hardening.audit.errors import AuditValueError

_RELATIVE = re.compile(r"(\d{1,6})([smhd])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True)
class RunFilter:
    job: str | None = None
    target: str | None = None
    since: dt.datetime | None = None


@dataclass(frozen=True)
class Run:
    seq: int
    time: str
    config_version: object
    job: str
    topic: str
    target: str
    port: object
    credential: str
    result: str
    duration_ms: object
    result_sha256: str

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def parse_since(text: str, now: dt.datetime) -> dt.datetime:
    """Accept '30m', '2h', '7d' (before ``now``) or an ISO 8601 date or UTC time."""
    m = _RELATIVE.fullmatch(text.strip())
    if m:
        return now - dt.timedelta(seconds=int(m.group(1)) * _UNITS[m.group(2)])
    try:
        when = dt.datetime.fromisoformat(text.strip())
    except ValueError as e:
        raise AuditValueError(
            f"--since {text[:40]!r} is not a time; use e.g. 2h, 7d or 2026-11-25T06:00:00Z"
        ) from e
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def _str(value: object) -> str:
    return "" if value is None else str(value)


def iter_runs(directory: Path, flt: RunFilter, max_entry_bytes: int = 65_536) -> Iterator[Run]:
    config_version: object = None
    for line in _files.iter_lines(directory, max_entry_bytes):
        try:
            entry = _entry.parse_entry(line.raw) if line.complete else None
        except _entry.EntryFormatError:
            entry = None
        if entry is None:
            continue
        f = entry.fields
        # A hot reload changes the version under the running appliance: jobs after it ran under the new one.
        if entry.event in ("appliance.start", "config.accepted", "config.reloaded"):
            config_version = f.get("config_version", config_version)
            continue
        if entry.event == "probe.finished":
            result = "ok" if f.get("result_code") == 0 else f"error {_str(f.get('result_code'))}"
            if f.get("error"):
                result = f"{result}: {_str(f.get('error'))}"
        elif entry.event == "target.denied":
            result = f"denied: {_str(f.get('reason'))}"
        else:
            continue
        run = Run(
            entry.seq,
            entry.time,
            config_version,
            _str(f.get("job")),
            _str(f.get("topic")),
            _str(f.get("target")),
            f.get("port"),
            _str(f.get("credential")),
            result,
            f.get("duration_ms"),
            _str(f.get("result_sha256")),
        )
        if flt.job is not None and run.job != flt.job:
            continue
        if flt.target is not None and run.target.lower() != flt.target.lower():
            continue
        if flt.since is not None and _entry.parse_time(run.time) < flt.since:
            continue
        yield run
