"""Audit entries of an upgrade: straight into the audit log when it is free, else queued for the appliance.

The running appliance holds the audit log's lock, and an upgrade happens while it runs. Entries the
upgrader cannot write go to ``STATE/upgrade/audit-pending.jsonl``; the appliance records them (with the
time they happened as ``queued_at``) when it starts and after each poll, then removes the file. Only
``upgrade.*`` events are taken from the queue, so the file cannot be used to forge other entries.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
from pathlib import Path

from appliance.limits import MAX_UPGRADE_PENDING_AUDIT_BYTES
from appliance.upgrade.state import upgrade_dir
from hardening.audit import AuditError, AuditLog, open_audit_log
from hardening.audit.errors import AuditValueError
from hardening.audit.events import check_event
from hardening.runas import acting_as, state_owner

PENDING_NAME = "audit-pending.jsonl"
_APPEND = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)


def record(state_dir: Path, event: str, fields: dict[str, object]) -> str:
    """Record or queue one entry; returns "audited", "queued" or why neither (the upgrade goes on)."""
    check_event(event, fields)  # a wiring mistake fails here, not at the appliance's next start
    with acting_as(state_owner(state_dir)):
        try:
            log = open_audit_log(state_dir)
        except AuditError:
            pass  # busy (the appliance runs) or not writable now: queue it
        else:
            try:
                log.record(event, fields)
                return "audited"
            finally:
                log.close()
        return _queue(state_dir, event, fields)


def _queue(state_dir: Path, event: str, fields: dict[str, object]) -> str:
    directory = upgrade_dir(state_dir)
    directory.mkdir(mode=0o700, exist_ok=True)
    path = directory / PENDING_NAME
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    line = (json.dumps({"event": event, "fields": fields, "queued_at": when}, sort_keys=True) + "\n").encode()
    try:
        if path.exists() and path.stat().st_size + len(line) > MAX_UPGRADE_PENDING_AUDIT_BYTES:
            return "not audited: the upgrade audit queue is full; start the appliance so it records the queue"
        fd = os.open(path, _APPEND, 0o600)
        try:
            os.write(fd, line)  # one write: a crash leaves whole lines, at most a torn last one
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as e:
        return f"not audited: cannot write {path.name} ({e.strerror}); check the state dir"
    return "queued"


def drain(state_dir: Path, audit: AuditLog) -> int:
    """Record the queued upgrade entries in ``audit`` (the appliance's log) and remove the queue."""
    path = upgrade_dir(state_dir) / PENDING_NAME
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_UPGRADE_PENDING_AUDIT_BYTES + 1)
    except FileNotFoundError:
        return 0
    # Removed first: a line that cannot be recorded must not be retried on every poll.
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    recorded = 0
    for raw in data[:MAX_UPGRADE_PENDING_AUDIT_BYTES].splitlines():
        try:
            doc = json.loads(raw)
            event, fields, when = doc["event"], doc["fields"], doc["queued_at"]
            if not (isinstance(event, str) and event.startswith("upgrade.") and isinstance(fields, dict)):
                raise ValueError("not an upgrade entry")
            audit.record(event, {**fields, "queued_at": str(when)})
            recorded += 1
        except (ValueError, KeyError, TypeError, AuditValueError) as e:
            audit.record("error", {"where": "upgrade audit queue", "message": f"entry skipped: {e}"[:200]})
    return recorded
