"""Quarantine: a file in the state directory that stops every probe while heartbeats and the outbox go on.

``midbox quarantine on --reason TEXT`` writes ``STATE_DIR/quarantine`` (JSON: reason, by, since); an
admin may also drop the file by hand (``touch``, or a line of text as the reason). The running
appliance looks at it before every poll, so no new probe starts after the next poll; it is a file, so
it survives a restart. A file that exists but cannot be read still quarantines (fail closed).
"""

from __future__ import annotations

import datetime as dt
import errno
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from hardening.atomic import atomic_write, fsync_dir
from hardening.smallfile import read_capped

QUARANTINE_FILE = "quarantine"
MAX_QUARANTINE_BYTES = 4096
MAX_REASON_CHARS = 300


@dataclass(frozen=True)
class QuarantineState:
    on: bool
    reason: str = ""
    by: str = ""  # "cli" (midbox quarantine on), "file" (dropped by hand)
    since: str = ""


OFF = QuarantineState(False)


class Quarantine:
    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / QUARANTINE_FILE
        self._memo = state_dir / (QUARANTINE_FILE + ".audited")
        self._lifted = state_dir / (QUARANTINE_FILE + ".lifted")

    def read(self) -> QuarantineState:
        """The state now. Cheap (one open) when there is no file, the usual case."""
        try:
            fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
        except FileNotFoundError:
            return OFF
        except OSError as e:
            # A symlink (ELOOP) or a file this user cannot read: someone meant to stop the probes.
            why = "a symlink" if e.errno == errno.ELOOP else type(e).__name__
            return QuarantineState(True, f"the quarantine file exists but cannot be read ({why})", "file")
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return QuarantineState(True, "the quarantine file is not a regular file", "file")
            data = os.read(fd, MAX_QUARANTINE_BYTES + 1)
        except OSError as e:
            return QuarantineState(True, f"the quarantine file cannot be read ({type(e).__name__})", "file")
        finally:
            os.close(fd)
        return _parse(data[:MAX_QUARANTINE_BYTES])

    def set(self, reason: str, by: str = "cli") -> QuarantineState:
        state = QuarantineState(
            True, _clean(reason), by, dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        )
        body = {"reason": state.reason, "by": state.by, "since": state.since}
        atomic_write(self.path, json.dumps(body).encode() + b"\n")
        return state

    def clear(self, reason: str = "", by: str = "cli") -> bool:
        """Remove the file (noting who lifted it and why); False when there was none."""
        atomic_write(self._lifted, json.dumps({"reason": _clean(reason), "by": by}).encode() + b"\n")
        try:
            self.path.unlink()
        except FileNotFoundError:
            return False
        fsync_dir(self.path.parent)
        return True

    def lifted(self) -> QuarantineState:
        """Who lifted the quarantine and why, as ``off`` noted it (empty when the file was just removed)."""
        try:
            doc = json.loads(read_capped(self._lifted, MAX_QUARANTINE_BYTES)[:MAX_QUARANTINE_BYTES])
            self._lifted.unlink()
        except (OSError, ValueError):
            return OFF
        if not isinstance(doc, dict):
            return OFF
        reason, by = doc.get("reason"), doc.get("by")
        return QuarantineState(False, _clean(reason) if isinstance(reason, str) else "", _clean(str(by))[:20])

    def audited(self) -> QuarantineState:
        """The state the audit log last recorded (OFF when it never recorded one)."""
        try:
            doc = json.loads(read_capped(self._memo, MAX_QUARANTINE_BYTES)[:MAX_QUARANTINE_BYTES])
        except (OSError, ValueError):
            return OFF
        if not isinstance(doc, dict) or doc.get("on") is not True:
            return OFF
        reason, by = doc.get("reason"), doc.get("by")
        return QuarantineState(
            True, reason if isinstance(reason, str) else "", by if isinstance(by, str) else ""
        )

    def remember(self, state: QuarantineState) -> None:
        atomic_write(
            self._memo, json.dumps({"on": state.on, "reason": state.reason, "by": state.by}).encode()
        )


def _clean(text: str) -> str:
    return " ".join(text.split())[:MAX_REASON_CHARS]


def _parse(data: bytes) -> QuarantineState:
    text = data.decode("utf-8", "replace")
    try:
        doc = json.loads(text)
    except ValueError:
        doc = None
    if isinstance(doc, dict):
        reason, by, since = (doc.get(k) for k in ("reason", "by", "since"))
        return QuarantineState(
            True,
            _clean(reason) if isinstance(reason, str) else "",
            _clean(by)[:20] if isinstance(by, str) else "file",
            _clean(since)[:40] if isinstance(since, str) else "",
        )
    first = text.strip().splitlines()[0] if text.strip() else ""
    return QuarantineState(True, _clean(first), "file")
