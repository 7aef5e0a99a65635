"""The one way a moment becomes text here: UTC, ISO 8601, ending in Z."""

from __future__ import annotations

import datetime as dt

SECONDS = "%Y-%m-%dT%H:%M:%SZ"  # signed statements, configs and every message that quotes them
MICROSECONDS = "%Y-%m-%dT%H:%M:%S.%fZ"  # audit entries and checkpoints: events order within a second


def format_time(when: dt.datetime, *, micro: bool = False) -> str:
    """``when`` in UTC, to the second (``micro=True``: to the microsecond, the audit log's format)."""
    if when.tzinfo is None:
        # Config parsing and the CLI refuse times without a zone, so this is a wiring mistake.
        raise ValueError("a time without a time zone cannot be written; give it tzinfo=datetime.UTC")
    return when.astimezone(dt.UTC).strftime(MICROSECONDS if micro else SECONDS)
