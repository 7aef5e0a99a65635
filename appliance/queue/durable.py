"""What survives a crash: the journal of claimed jobs and the outbox of finished results.

A job is journaled before its probe starts; its result is in the outbox (fsync'd, encrypted) before
the journal entry goes; the outbox entry goes only after the instance confirmed the insert. So after
a kill -9 at any moment, the appliance knows every job it claimed and every result it owes.

Against a power loss the order holds too, with fewer syncs: additions are durable before they return
(each is a line appended to a sealed log, ``hardening.sealedlog``; concurrent jobs share one data
sync); a journal entry's removal is made durable before its result's outbox entry goes
(``OutboxCloser``), never after; and an outbox entry whose removal a power loss undoes
is sent again only after asking the instance whether it has it already.

On disk: ``STATE/journal.log`` and ``STATE/outbox.log`` (each with a ``.lock`` beside it).

**Entries an older version left** in its per-file directories ``STATE/journal/`` and ``STATE/outbox/``
(``SealedDir``) are not moved: they are read where they are and go only when the job they belong to
is done, as the older version would have done. A job that has an entry there keeps all its entries
there (its result too, when it is run again after an interruption), so an upgrade rolled back before
its first successful poll leaves the older version every result it owes where it looks. New claims
need a successful poll, after which an upgrade is no longer rolled back; they go to the logs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from appliance.interfaces import Outcome
from appliance.limits import DURABLE_COMPACT_DEAD_BYTES, DURABLE_COMPACT_DEAD_LINES
from appliance.queue.records import OutputRecord
from hardening.sealbox import SealedDir, derive_key
from hardening.sealedlog import Compaction, SealedLog

JOURNAL = "journal"
OUTBOX = "outbox"
_COMPACTION = Compaction(DURABLE_COMPACT_DEAD_LINES, DURABLE_COMPACT_DEAD_BYTES)


def open_log(state_dir: Path, seal_key: bytes, purpose: str, *, writable: bool = True) -> SealedLog:
    """The sealed log ``STATE/<purpose>.log``. Read-only (another process looking in) changes nothing."""
    key = derive_key(seal_key, purpose)
    return SealedLog(state_dir / f"{purpose}.log", key, purpose, writable=writable, compaction=_COMPACTION)


def _older_dir(state_dir: Path, seal_key: bytes, purpose: str) -> SealedDir:
    return SealedDir(state_dir / purpose, derive_key(seal_key, purpose), purpose)


def open_durable(state_dir: Path, seal_key: bytes, outbox_capacity: int) -> tuple[Journal, Outbox]:
    """The appliance's journal and outbox, writable (the caller closes both), with an older version's
    entries where it left them (see the module's docstring)."""
    older: dict[str, SealedDir] = {}
    for purpose in (JOURNAL, OUTBOX):
        directory = state_dir / purpose
        if directory.is_dir() and not directory.is_symlink():
            older[purpose] = _older_dir(state_dir, seal_key, purpose)
    ids = frozenset(name for d in older.values() for name in d.names())
    journal_log = open_log(state_dir, seal_key, JOURNAL)
    try:
        outbox_log = open_log(state_dir, seal_key, OUTBOX)
    except BaseException:
        journal_log.close()
        raise
    if not ids:
        return Journal(journal_log), Outbox(outbox_log, outbox_capacity)
    # Both directories, so that a result of an older job lands where the older version looks for it.
    dirs = [older.get(p) or _older_dir(state_dir, seal_key, p) for p in (JOURNAL, OUTBOX)]
    return Journal(journal_log, dirs[0], ids), Outbox(outbox_log, outbox_capacity, dirs[1], ids)


# The fields are flat strings: dataclasses.asdict's deep copy was half the CPU of a journal write, and
# looking the fields up per record a tenth.
_RECORD_FIELDS = tuple(f.name for f in dataclasses.fields(OutputRecord))


def _record_json(record: OutputRecord) -> dict[str, str]:
    return {name: getattr(record, name) for name in _RECORD_FIELDS}


def _record(raw: object) -> OutputRecord:
    if not isinstance(raw, dict):
        raise ValueError("not a record")
    fields = {f.name for f in dataclasses.fields(OutputRecord)}
    # Fields with a default came later: an entry kept by an older version may lack them.
    required = {f.name for f in dataclasses.fields(OutputRecord) if f.default is dataclasses.MISSING}
    if not required <= set(raw) <= fields or not all(isinstance(v, str) for v in raw.values()):
        raise ValueError("record fields do not match")
    return OutputRecord(**raw)


class _Entries:
    """Sealed entries named by the output record's sys_id: in a sealed log, and in an older version's
    per-file directory (``older``) for the jobs named in ``older_ids`` (see the module's docstring)."""

    def __init__(
        self, log: SealedLog, older: SealedDir | None = None, older_ids: frozenset[str] = frozenset()
    ) -> None:
        self._log = log
        self._older = older
        self._older_names = set(older.names()) if older is not None else set()
        self._older_ids = older_ids if older is not None else frozenset()

    def _put(self, sys_id: str, body: object) -> None:
        data = json.dumps(body).encode()
        if self._older is not None and sys_id in self._older_ids:
            self._older.put(sys_id, data)
            self._older_names.add(sys_id)
        else:
            self._log.put(sys_id, data)

    def remove(self, sys_id: str, *, durable: bool = True) -> None:
        """Remove the entry; ``durable=False`` leaves making that durable to ``settle()`` (or later)."""
        if self._older is not None and sys_id in self._older_names:
            self._older.delete(sys_id, durable=durable)
            self._older_names.discard(sys_id)
        self._log.delete(sys_id, durable=durable)

    def settle(self) -> None:
        if self._older is not None:
            self._older.settle()
        self._log.settle()

    def written(self) -> int:
        """A mark: every change made so far is durable once ``durable_upto()`` reaches it."""
        return self._log.written()

    def durable_upto(self) -> int:
        return self._log.durable_upto()

    def kept_elsewhere(self, sys_id: str) -> bool:
        """Whether ``sys_id``'s entries are in the older version's directory (not covered by marks)."""
        return self._older is not None and sys_id in self._older_ids

    def close(self) -> None:
        self._log.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _raw_entries(self) -> Iterator[bytes]:
        """The older version's entries first (they are older, listed oldest first), then the log's."""
        if self._older is not None:
            for name in self._older.names():
                if name in self._older_names:
                    with contextlib.suppress(FileNotFoundError):  # done meanwhile
                        yield self._older.get(name)
        for name, data in self._log.entries():
            if name not in self._older_names:
                yield data

    def __contains__(self, sys_id: object) -> bool:
        return sys_id in self._older_names or sys_id in self._log

    def count(self) -> int:
        return self._log.count() + sum(1 for name in self._older_names if name not in self._log)


@dataclass(frozen=True)
class Claimed:
    record: OutputRecord
    starts: int  # how often a probe was started for it; each start but the last was interrupted


class Journal(_Entries):
    """Jobs claimed and not yet finished, each with the number of times it was started."""

    def add(self, record: OutputRecord, starts: int = 1) -> None:
        self._put(record.sys_id, {"record": _record_json(record), "starts": starts})

    def entries(self) -> Iterator[Claimed]:
        for data in self._raw_entries():
            raw = json.loads(data)
            if isinstance(raw, dict) and set(raw) == {"record", "starts"}:
                starts = raw["starts"]
                if not isinstance(starts, int) or isinstance(starts, bool) or starts < 1:
                    raise ValueError("journal entry has a bad start count")
                yield Claimed(_record(raw["record"]), starts)
            else:
                yield Claimed(_record(raw), 1)  # written before start counts were kept


@dataclass(frozen=True)
class Pending:
    record: OutputRecord
    outcome: Outcome


class Outbox(_Entries):
    """Results not yet confirmed by the instance. Bounded: when full, the appliance stops claiming."""

    def __init__(
        self,
        log: SealedLog,
        capacity: int,
        older: SealedDir | None = None,
        older_ids: frozenset[str] = frozenset(),
    ) -> None:
        super().__init__(log, older, older_ids)
        self.capacity = capacity

    def add(self, record: OutputRecord, outcome: Outcome) -> None:
        body = {
            "record": _record_json(record),
            "payload": outcome.payload,
            "error": outcome.error,
            "duration_ms": outcome.duration_ms,
        }
        self._put(record.sys_id, body)

    def full(self) -> bool:
        return self.count() >= self.capacity

    def entries(self) -> Iterator[Pending]:
        for data in self._raw_entries():
            raw = json.loads(data)
            if not isinstance(raw, dict):
                raise ValueError("outbox entry is not an object")
            error = raw.get("error")
            outcome = Outcome(
                str(raw["payload"]), None if error is None else str(error), int(raw["duration_ms"])
            )
            yield Pending(_record(raw["record"]), outcome)


class OutboxCloser:
    """Outbox entries whose results the instance has: each goes once its journal entry's removal is
    durable, never before (else a power loss could bring the journal entry back without the result, and
    the job would run again).

    That removal was written, not synced, when the result was kept. Rather than a journal sync per
    result, an entry waits for the next one: under load the next job's journal entry syncs within
    milliseconds (``release()`` after it), and at rest ``settle()`` syncs once for all that wait. The
    outbox removal itself needs no sync: lost to a power loss, its result is sent again only after
    asking the instance whether it has it already. Called from worker threads.
    """

    def __init__(self, journal: Journal, outbox: Outbox) -> None:
        self._journal = journal
        self._outbox = outbox
        self._lock = threading.Lock()
        self._waiting: list[tuple[int, str]] = []  # (journal mark, sys_id), marks ascending

    def close(self, sys_id: str) -> None:
        """The instance has ``sys_id``'s result."""
        if self._journal.kept_elsewhere(sys_id):  # an older version's file: its own directory sync
            self._journal.settle()
            self._outbox.remove(sys_id, durable=False)
            return
        mark = self._journal.written()
        if self._journal.durable_upto() >= mark:
            self._outbox.remove(sys_id, durable=False)
            return
        with self._lock:
            self._waiting.append((mark, sys_id))

    def release(self) -> None:
        """Remove what a finished journal sync has made safe to remove (after a journal write)."""
        upto = self._journal.durable_upto()
        with self._lock:
            ready = [sys_id for mark, sys_id in self._waiting if mark <= upto]
            self._waiting = [(mark, sys_id) for mark, sys_id in self._waiting if mark > upto]
        for sys_id in ready:
            self._outbox.remove(sys_id, durable=False)

    def settle(self) -> None:
        """At rest or at stop: one journal sync for everything still waiting (none: nothing to do)."""
        with self._lock:
            if not self._waiting:
                return
        self._journal.settle()
        self.release()

    def waiting(self) -> int:
        with self._lock:
            return len(self._waiting)

    def unsent(self) -> int:
        """The outbox's results the instance does not have yet: what the health file calls the outbox's
        depth (an entry waiting here was sent; it only waits to be removed)."""
        with self._lock:
            return max(0, self._outbox.count() - len(self._waiting))
