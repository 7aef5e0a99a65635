"""What survives a crash: the journal of claimed jobs and the outbox of finished results.

A job is journaled before its probe starts; its result is in the outbox (fsync'd, encrypted) before
the journal entry goes; the outbox entry goes only after the instance confirmed the insert. So after
a kill -9 at any moment, the appliance knows every job it claimed and every result it owes.

Against a power loss the order holds too, with fewer fsyncs: additions are fsync'd before they return
(concurrent jobs share the directory's fsync); a journal entry's removal is made durable before its
result's outbox entry goes (``Runner._close_outbox_entry``), never after; and an outbox entry whose
removal a power loss undoes is sent again only after asking the instance whether it has it already.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from dataclasses import dataclass

from appliance.interfaces import Outcome
from appliance.queue.records import OutputRecord
from hardening.sealbox import SealedDir


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
    """Sealed entries named by the output record's sys_id, with the names kept in memory."""

    def __init__(self, sealed: SealedDir) -> None:
        self._dir = sealed
        self._names = set(sealed.names())

    def _put(self, sys_id: str, body: object) -> None:
        self._dir.put(sys_id, json.dumps(body).encode())
        self._names.add(sys_id)

    def remove(self, sys_id: str, *, durable: bool = True) -> None:
        """Remove the entry; ``durable=False`` leaves making that durable to ``settle()`` (or later)."""
        self._dir.delete(sys_id, durable=durable)
        self._names.discard(sys_id)

    def settle(self) -> None:
        self._dir.settle()

    def __contains__(self, sys_id: object) -> bool:
        return sys_id in self._names

    def count(self) -> int:
        return len(self._names)


@dataclass(frozen=True)
class Claimed:
    record: OutputRecord
    starts: int  # how often a probe was started for it; each start but the last was interrupted


class Journal(_Entries):
    """Jobs claimed and not yet finished, each with the number of times it was started."""

    def add(self, record: OutputRecord, starts: int = 1) -> None:
        self._put(record.sys_id, {"record": _record_json(record), "starts": starts})

    def entries(self) -> Iterator[Claimed]:
        for name in self._dir.names():
            raw = json.loads(self._dir.get(name))
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

    def __init__(self, sealed: SealedDir, capacity: int) -> None:
        super().__init__(sealed)
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
        for name in self._dir.names():
            raw = json.loads(self._dir.get(name))
            if not isinstance(raw, dict):
                raise ValueError("outbox entry is not an object")
            error = raw.get("error")
            outcome = Outcome(
                str(raw["payload"]), None if error is None else str(error), int(raw["duration_ms"])
            )
            yield Pending(_record(raw["record"]), outcome)
