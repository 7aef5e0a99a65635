"""Replay protection: an output record older than the replay window, or one this appliance already ran,
is refused with a reason instead of being run.

The run ledger (``STATE_DIR/ran.log``) holds the sys_id of every job started within the window, one
line each, appended and fsync'd before the probe starts; a line older than the window is dropped when
the file is compacted. A record older than the window is refused by its age, so the ledger only ever
needs the window's jobs.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path

from hardening.atomic import GroupCommit, atomic_write

LEDGER_FILE = "ran.log"
FUTURE_ALLOWANCE_S = 3600.0  # clocks of the instance and this host may differ this much
_APPEND = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
_LINE = re.compile(r"([0-9A-Za-z]{1,64}) ([0-9]{1,12})")

STALE = (
    "the output record was created {age} ago, more than the {window} this appliance runs (replay "
    "protection): ask the instance for a fresh probe; raise appliance.max_job_age_s if jobs wait that long"
)
ALREADY_RUN = (
    "this output record was already run by this appliance (replay protection: a record is run once); "
    "trigger the probe again on the instance to get a new one"
)
NO_DATE = (
    "the output record has no readable sys_created_on, so its age cannot be checked (replay protection); "
    "the instance must send sys_created_on"
)
FUTURE = (
    "the output record is dated {ahead} in the future (replay protection); check the clocks of this "
    "host and the instance"
)


def parse_created(text: str) -> dt.datetime | None:
    """ServiceNow's ``YYYY-MM-DD HH:MM:SS`` (UTC, as the Table API sends it), fractions allowed."""
    for fmt in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M:%S.%f"):
        try:
            return dt.datetime.strptime(text.strip(), fmt).replace(tzinfo=dt.UTC)
        except ValueError:
            continue
    return None


def _span(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{int(seconds)} s"


class RunLedger:
    def __init__(
        self, path: Path, window_s: float, max_entries: int, clock: Callable[[], float] = time.time
    ) -> None:
        self._path = path
        self._window_s = window_s
        self._max = max_entries
        self._clock = clock
        # In the order run (a job run again moves to the end), so the oldest are trimmed from the front.
        self._ran: dict[str, int] = {}
        self._lines = 0
        # Jobs start in threads (asyncio.to_thread): the lock guards the dict and the file; an fsync
        # covers every line written before it began, so concurrent starts share one (group commit).
        self._lock = threading.Lock()
        self._commit = GroupCommit(self._fsync)
        self._load()

    def _load(self) -> None:
        try:
            data = self._path.read_bytes()
        except FileNotFoundError:
            return
        oldest = self._clock() - self._window_s
        for line in data.decode("ascii", "replace").splitlines():
            m = _LINE.fullmatch(line)
            if m and int(m.group(2)) >= oldest:
                self._ran[m.group(1)] = int(m.group(2))
        self._trim()
        self._compact()

    def __contains__(self, sys_id: object) -> bool:
        return sys_id in self._ran

    def __len__(self) -> int:
        return len(self._ran)

    def add(self, sys_id: str) -> None:
        """Record ``sys_id`` as run, durably (fsync'd when this returns), before its probe starts."""
        with self._lock:
            now = int(self._clock())
            self._ran.pop(sys_id, None)
            self._ran[sys_id] = now
            self._trim()
            if self._lines > 2 * len(self._ran) + 1000:
                self._compact()  # atomic and fsync'd, every line in it
                return
            fd = os.open(self._path, _APPEND, 0o600)
            try:
                os.write(fd, f"{sys_id} {now}\n".encode("ascii"))
            finally:
                os.close(fd)
            self._lines += 1
            mine = self._commit.changed()
        self._commit.sync(mine)

    def _fsync(self) -> None:
        fd = os.open(self._path, _APPEND, 0o600)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _trim(self) -> None:
        # Oldest first, so this stops at the first entry inside the window: O(1) per add, not O(entries).
        oldest = self._clock() - self._window_s
        ran = self._ran
        while ran:
            first = next(iter(ran))
            if ran[first] >= oldest and len(ran) <= self._max:
                break
            del ran[first]

    def _compact(self) -> None:
        atomic_write(self._path, "".join(f"{k} {t}\n" for k, t in self._ran.items()).encode("ascii"))
        self._lines = len(self._ran)
        self._commit.all_durable()  # the new file was fsync'd with every line in it

    def refusal(self, sys_id: str, sys_created_on: str) -> str | None:
        """Why a freshly polled record must not run, or None."""
        if sys_id in self._ran:
            return ALREADY_RUN
        created = parse_created(sys_created_on)
        if created is None:
            return NO_DATE
        age = self._clock() - created.timestamp()
        if age > self._window_s:
            return STALE.format(age=_span(age), window=_span(self._window_s))
        if -age > FUTURE_ALLOWANCE_S:
            return FUTURE.format(ahead=_span(-age))
        return None
