"""Audit entries another midbox process hands to the running appliance (``midbox creds test``).

The running appliance holds the audit log's lock for as long as it runs: it alone appends, so the
chain head, the sequence number and the sealing key live in one process and cannot fork. A second
process therefore never writes the log while the appliance runs; it drops its entries as one file in
``audit/inbox/`` (atomic write, 0600, inside the 0700 audit directory, so only the service user can),
and the appliance records them at its next look (every ``INBOX_POLL_S`` and at start), each with the
file's ``inbox`` id, then removes the file. Delivery is at least once: a crash between the append and
the removal records the file again at the next start, under the same id, so a reader can tell.

A file is hostile input like any other: size first, then a strict parse; only the job events a
stand-alone job produces are accepted (a file cannot forge a start, a config or a quarantine entry),
and a refused file is audited as ``audit.inbox_refused`` and removed.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

from hardening._strictjson import loads_strict
from hardening.atomic import atomic_write
from hardening.audit._files import audit_dir
from hardening.audit.errors import AuditError, AuditValueError
from hardening.audit.events import check_event

log = logging.getLogger(__name__)

INBOX = "inbox"
INBOX_POLL_S = 0.5
MAX_INBOX_FILE_BYTES = 256 * 1024
MAX_INBOX_EVENTS = 64
MAX_INBOX_FILES_PER_DRAIN = 32
_NAME = re.compile(r"[0-9a-f]{32}\.json")

# What one job run outside the appliance can produce; nothing about the appliance's own life.
INBOX_EVENTS = frozenset(
    {
        "probe.started",
        "probe.finished",
        "probe.connect",
        "target.denied",
        "scope.denied",
        "credential.attempt",
        "credential.used",
        "ssh.hostkey.rejected",
        "ssh.hostkey.pinned",
        "ssh.sudo.refused",
        "rate.limited",
        "breaker.opened",
        "breaker.closed",
        "topic.refused",
        "record.refused",
        "error",
    }
)


class Recorder(Protocol):
    def record(self, event: str, fields: Mapping[str, object]) -> None: ...


class InboxError(AuditError):
    """An inbox file that cannot be recorded (the appliance audits the refusal and drops it)."""


def inbox_dir(state_dir: Path) -> Path:
    return audit_dir(state_dir) / INBOX


def submit(state_dir: Path, events: Sequence[tuple[str, Mapping[str, object]]], *, by: str) -> str:
    """Hand ``events`` to the appliance that holds the log; returns the inbox id to wait for."""
    if len(events) > MAX_INBOX_EVENTS:
        raise AuditValueError(f"more than {MAX_INBOX_EVENTS} events for the audit inbox")
    for event, fields in events:
        if event not in INBOX_EVENTS:
            raise AuditValueError(f"event {event!r} cannot go through the audit inbox")
        check_event(event, fields)
    inbox_id = secrets.token_hex(16)
    body = json.dumps({"by": by, "events": [[e, dict(f)] for e, f in events]}, ensure_ascii=True)
    if len(body) > MAX_INBOX_FILE_BYTES:
        raise AuditValueError(f"the audit inbox takes at most {MAX_INBOX_FILE_BYTES} bytes per file")
    directory = inbox_dir(state_dir)
    directory.mkdir(mode=0o700, exist_ok=True)
    atomic_write(directory / f"{inbox_id}.json", body.encode("ascii"))
    return inbox_id


def waiting(state_dir: Path, inbox_id: str) -> bool:
    """True while the appliance has not yet recorded the file ``submit`` returned ``inbox_id`` for."""
    return (inbox_dir(state_dir) / f"{inbox_id}.json").exists()


def drain(state_dir: Path, sink: Recorder) -> int:
    """Record what waits in the inbox (oldest first), then remove each file; returns events recorded.

    Called by the process that holds the audit log. A file refused as a whole is audited and removed;
    a write failure of the log itself propagates (the caller's log is then broken anyway).
    """
    directory = inbox_dir(state_dir)
    try:
        found = []
        for entry in os.scandir(directory):
            if _NAME.fullmatch(entry.name):
                try:
                    found.append((entry.stat(follow_symlinks=False).st_mtime_ns, entry.name, entry))
                except FileNotFoundError:
                    continue
    except FileNotFoundError:
        return 0
    names = [entry for _, _, entry in sorted(found)[:MAX_INBOX_FILES_PER_DRAIN]]
    recorded = 0
    for entry in names:
        path = Path(entry.path)
        inbox_id = entry.name[:-5]
        try:
            by, events = _read(path)
        except InboxError as e:
            log.warning("audit inbox file %s refused: %s", entry.name, e)
            sink.record("audit.inbox_refused", {"inbox": inbox_id, "reason": str(e)[:200]})
        else:
            for event, fields in events:
                try:
                    sink.record(event, {**fields, "by": by, "inbox": inbox_id})
                    recorded += 1
                except AuditValueError as e:  # a value the log refuses (type, size): say so, go on
                    sink.record("audit.inbox_refused", {"inbox": inbox_id, "reason": f"{event}: {e}"[:200]})
        path.unlink(missing_ok=True)
    return recorded


def _read(path: Path) -> tuple[str, list[tuple[str, dict[str, object]]]]:
    # 1. Size first, never following a link someone put in the inbox.
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0))
    except OSError as e:
        raise InboxError(f"cannot be opened ({e.strerror})") from e
    try:
        data = os.read(fd, MAX_INBOX_FILE_BYTES + 1)
    finally:
        os.close(fd)
    # 2. Strict parse: one object, unique keys, nothing but "by" and "events".
    body = loads_strict(data, MAX_INBOX_FILE_BYTES, "audit inbox file", InboxError)
    by, raw_events = body.pop("by", None), body.pop("events", None)
    if body:
        raise InboxError(f"unknown key {sorted(body)[0]!r}")
    if not isinstance(by, str) or not 0 < len(by) <= 64:
        raise InboxError("'by' must name the command in 1..64 characters")
    if not isinstance(raw_events, list) or len(raw_events) > MAX_INBOX_EVENTS:
        raise InboxError(f"'events' must be a list of at most {MAX_INBOX_EVENTS}")
    # 3. Every event declared, allowed through the inbox, and carrying its required fields.
    events: list[tuple[str, dict[str, object]]] = []
    for item in raw_events:
        if not (
            isinstance(item, list)
            and len(item) == 2
            and isinstance(item[0], str)
            and isinstance(item[1], dict)
        ):
            raise InboxError("each event must be [name, {fields}]")
        event, fields = item
        if event not in INBOX_EVENTS:
            raise InboxError(f"event {event[:40]!r} cannot come through the inbox")
        try:
            check_event(event, fields)
        except AuditValueError as e:
            raise InboxError(str(e)) from e
        events.append((event, fields))
    return by, events
