"""What survives a crash: the journal of claimed jobs and the outbox of finished results.

A job is journaled before its probe starts; its result is in the outbox (fsync'd, encrypted) before
the journal entry goes; the outbox entry goes only after the instance confirmed the insert. So after
a kill -9 at any moment, the appliance knows every job it claimed and every result it owes.

Against a power loss the order holds too, with fewer syncs: additions are durable before they return
(each is a line appended to a sealed log, ``hardening.sealedlog``; concurrent jobs share one data
sync); a journal entry's removal is made durable before its result's outbox entry goes
(``Runner._close_outbox_entry``), never after; and an outbox entry whose removal a power loss undoes
is sent again only after asking the instance whether it has it already.

On disk: ``STATE/journal.log`` and ``STATE/outbox.log`` (each with a ``.lock`` beside it). Entries an
older version left in the per-file directories ``STATE/journal/`` and ``STATE/outbox/`` are imported
into the logs when they are opened, then those files go (``hardening.sealedimport``).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from appliance.interfaces import Outcome
from appliance.limits import DURABLE_COMPACT_DEAD_BYTES, DURABLE_COMPACT_DEAD_LINES
from appliance.queue.records import OutputRecord
from hardening.sealbox import derive_key
from hardening.sealedimport import import_sealed_dir
from hardening.sealedlog import Compaction, SealedLog

JOURNAL = "journal"
OUTBOX = "outbox"
_COMPACTION = Compaction(DURABLE_COMPACT_DEAD_LINES, DURABLE_COMPACT_DEAD_BYTES)


def open_log(state_dir: Path, seal_key: bytes, purpose: str, *, writable: bool = True) -> SealedLog:
    """The sealed log ``STATE/<purpose>.log``; opened writable, it first takes in an older version's
    per-file entries from ``STATE/<purpose>/``. Read-only (another process looking in) changes nothing."""
    key = derive_key(seal_key, purpose)
    log = SealedLog(state_dir / f"{purpose}.log", key, purpose, writable=writable, compaction=_COMPACTION)
    if writable:
        try:
            import_sealed_dir(log, state_dir / purpose, key, purpose)
        except BaseException:
            log.close()
            raise
    return log


def _record_json(record: OutputRecord) -> dict[str, str]:
    # The fields are flat strings: dataclasses.asdict's deep copy was half the CPU of a journal write.
    return {f.name: getattr(record, f.name) for f in dataclasses.fields(record)}


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
    """Sealed entries named by the output record's sys_id, in a sealed log (names kept in memory)."""

    def __init__(self, log: SealedLog) -> None:
        self._log = log

    def _put(self, sys_id: str, body: object) -> None:
        self._log.put(sys_id, json.dumps(body).encode())

    def remove(self, sys_id: str, *, durable: bool = True) -> None:
        """Remove the entry; ``durable=False`` leaves making that durable to ``settle()`` (or later)."""
        self._log.delete(sys_id, durable=durable)

    def settle(self) -> None:
        self._log.settle()

    def close(self) -> None:
        self._log.close()

    def __contains__(self, sys_id: object) -> bool:
        return sys_id in self._log

    def count(self) -> int:
        return self._log.count()


@dataclass(frozen=True)
class Claimed:
    record: OutputRecord
    starts: int  # how often a probe was started for it; each start but the last was interrupted


class Journal(_Entries):
    """Jobs claimed and not yet finished, each with the number of times it was started."""

    def add(self, record: OutputRecord, starts: int = 1) -> None:
        self._put(record.sys_id, {"record": _record_json(record), "starts": starts})

    def entries(self) -> Iterator[Claimed]:
        for _, data in self._log.entries():
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

    def __init__(self, log: SealedLog, capacity: int) -> None:
        super().__init__(log)
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
        for _, data in self._log.entries():
            raw = json.loads(data)
            if not isinstance(raw, dict):
                raise ValueError("outbox entry is not an object")
            error = raw.get("error")
            outcome = Outcome(
                str(raw["payload"]), None if error is None else str(error), int(raw["duration_ms"])
            )
            yield Pending(_record(raw["record"]), outcome)
