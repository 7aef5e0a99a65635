"""SQLite tables ``ecc_queue`` and ``ecc_agent``, with the two ECC business rules of the instance."""

from __future__ import annotations

import datetime as dt
import sqlite3
import threading
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import defusedxml.ElementTree as SafeET

QUEUE_FIELDS = (
    "sys_id",
    "agent",
    "topic",
    "name",
    "source",
    "payload",
    "queue",
    "state",
    "response_to",
    "agent_correlator",
    "priority",
    "sequence",
    "sys_created_on",
    "processed",
    "error_string",
)
AGENT_FIELDS = (
    "sys_id",
    "name",
    "status",
    "validated",
    "version",
    "host_name",
    "ip_address",
    "started",
    "stopped",
    "last_refreshed",
)
# MID Server Issue (ecc_agent_issue): the MID record's "Server Issues" related list. Column names beyond
# what ServiceNow's pages say (the MID, the issue source, a message, the state) are this stand-in's guess.
ISSUE_FIELDS = (
    "sys_id",
    "mid_server",
    "source",
    "message",
    "state",
    "count",
    "last_detected",
    "sys_created_on",
)
TABLES = {"ecc_queue": QUEUE_FIELDS, "ecc_agent": AGENT_FIELDS, "ecc_agent_issue": ISSUE_FIELDS}

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS ecc_queue ({", ".join(f"{f} TEXT NOT NULL DEFAULT ''" for f in QUEUE_FIELDS)});
CREATE INDEX IF NOT EXISTS ecc_queue_claim ON ecc_queue (agent, queue, state, priority, sys_created_on);
CREATE INDEX IF NOT EXISTS ecc_queue_response ON ecc_queue (response_to);
CREATE UNIQUE INDEX IF NOT EXISTS ecc_queue_sys_id ON ecc_queue (sys_id);
CREATE TABLE IF NOT EXISTS ecc_agent ({", ".join(f"{f} TEXT NOT NULL DEFAULT ''" for f in AGENT_FIELDS)});
CREATE TABLE IF NOT EXISTS ecc_agent_issue ({", ".join(f"{f} TEXT NOT NULL DEFAULT ''" for f in ISSUE_FIELDS)}
);
"""


class QueryError(ValueError):
    """An encoded query this stand-in does not understand."""


def now_text() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


class Store:
    """Thread-safe access to the instance's tables. Column names are checked against TABLES."""

    def __init__(self, path: Path | str) -> None:
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()
        self._seq = 0

    def close(self) -> None:
        self._db.close()

    def query(
        self, table: str, encoded: str, limit: int | None = None, fields: Sequence[str] = ()
    ) -> list[dict[str, str]]:
        columns = TABLES[table]
        where, args, order = _compile(encoded, columns)
        wanted = [f for f in fields if f in columns] or list(columns)
        # Table and column names come from TABLES only; values are always bound parameters.
        sql = f"SELECT {', '.join(wanted)} FROM {table}"  # noqa: S608  # nosec B608
        if where:
            sql += " WHERE " + " AND ".join(where)
        if order:
            sql += " ORDER BY " + ", ".join(order)
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        return [dict(zip(wanted, row, strict=True)) for row in rows]

    def get(self, table: str, sys_id: str) -> dict[str, str] | None:
        rows = self.query(table, f"sys_id={sys_id}", limit=1)
        return rows[0] if rows else None

    def insert(self, table: str, values: Mapping[str, object]) -> dict[str, str]:
        columns = TABLES[table]
        row = {f: "" for f in columns}
        for key, value in values.items():
            if key in columns and key != "sys_id":
                row[key] = "" if value is None else str(value)
        row["sys_id"] = uuid.uuid4().hex
        if table == "ecc_queue":
            row["sys_created_on"] = now_text()
            row["state"] = row["state"] or "ready"
            row["priority"] = row["priority"] or "2"
            if row["queue"] == "input" and _skip_sensor(row["payload"]):
                row["state"], row["processed"] = "processed", now_text()
        elif table == "ecc_agent":
            row["validated"] = row["validated"] or "false"  # new MIDs wait for an admin's Validate
        elif table == "ecc_agent_issue":
            row["sys_created_on"] = now_text()
        with self._lock:
            self._seq += 1
            if table == "ecc_queue":
                row["sequence"] = f"{int(dt.datetime.now(dt.UTC).timestamp() * 1e6):020d}{self._seq:06d}"
            self._db.execute(
                f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})",  # noqa: S608  # nosec B608
                [row[c] for c in columns],
            )
        if table == "ecc_queue" and row["queue"] == "input":
            self._business_rules(row)
        return row

    def update(self, table: str, sys_id: str, values: Mapping[str, object]) -> dict[str, str] | None:
        columns = TABLES[table]
        sets = {k: "" if v is None else str(v) for k, v in values.items() if k in columns and k != "sys_id"}
        if sets:
            with self._lock:
                self._db.execute(
                    f"UPDATE {table} SET {', '.join(f'{k}=?' for k in sets)} WHERE sys_id=?",  # noqa: S608  # nosec B608
                    [*sets.values(), sys_id],
                )
        return self.get(table, sys_id)

    def _business_rules(self, row: Mapping[str, str]) -> None:
        # "ECC Queue - mark outputs state": a queue.processing input moves the listed outputs.
        if row["topic"] == "queue.processing":
            for sys_id, state in _processing_ids(row["payload"]):
                self._set_output_state(sys_id, state, row["agent"])
        # "ECC Queue - mark outputs processed": an input answering an output closes it.
        elif row["response_to"]:
            self._set_output_state(row["response_to"], "processed", row["agent"])

    def _set_output_state(self, sys_id: str, state: str, agent: str) -> None:
        extra = ", processed=?" if state == "processed" else ""
        args: list[str] = [state] + ([now_text()] if extra else []) + [sys_id, agent]
        with self._lock:
            self._db.execute(
                f"UPDATE ecc_queue SET state=?{extra} WHERE sys_id=? AND queue='output' AND agent=?",  # noqa: S608  # nosec B608
                args,
            )

    def reassign(self, from_agent: str, to_agent: str) -> int:
        """Give another agent the outputs not yet answered (ready, or claimed and unanswered)."""
        with self._lock:
            cur = self._db.execute(
                "UPDATE ecc_queue SET agent=?, state='ready' WHERE agent=? AND queue='output' "
                "AND state IN ('ready', 'processing')",
                (to_agent, from_agent),
            )
            return int(cur.rowcount)

    def ensure_agent(self, name: str, *, validated: bool = False) -> dict[str, str]:
        """Pre-create the ecc_agent record of a MID (created Down, as an admin would make it)."""
        rows = self.query("ecc_agent", f"name={name}", limit=1)
        if rows:
            return rows[0]
        return self.insert(
            "ecc_agent", {"name": name, "status": "Down", "validated": "true" if validated else "false"}
        )

    def validate_agent(self, name: str, validated: bool = True) -> dict[str, str] | None:
        """The admin's Validate (or Invalidate) on a MID record; None if there is no such record."""
        rows = self.query("ecc_agent", f"name={name}", limit=1)
        if not rows:
            return None
        return self.update("ecc_agent", rows[0]["sys_id"], {"validated": "true" if validated else "false"})

    def sense(self, encoded: str = "") -> list[dict[str, str]]:
        """The stand-in for the instance's sensors: take the ready inputs (except queue.processing,
        which the business rule already handled) matching ``encoded`` and mark them processed."""
        query = "queue=input^state=ready^topic!=queue.processing" + (f"^{encoded}" if encoded else "")
        rows = self.query("ecc_queue", query + "^ORDERBYsys_created_on")
        for row in rows:
            self.update("ecc_queue", row["sys_id"], {"state": "processed", "processed": now_text()})
        return rows

    def enqueue(self, outputs: Iterable[Mapping[str, str]]) -> list[str]:
        ids = []
        for values in outputs:
            ids.append(self.insert("ecc_queue", {**values, "queue": "output", "state": "ready"})["sys_id"])
        return ids


def _skip_sensor(payload: str) -> bool:
    """An input whose payload parameters say skip_sensor=true goes to processed at once; every other
    input stays ready until a sensor takes it (Store.sense, the stand-in for the instance's sensors)."""
    if "skip_sensor" not in payload:
        return False
    try:
        root = SafeET.fromstring(payload, forbid_dtd=True)
    except Exception:  # the instance ignores a payload it cannot read
        return False
    return any(
        p.get("name") == "skip_sensor" and (p.get("value") or p.text or "").strip().lower() == "true"
        for p in root.iterfind("parameters/parameter")
    )


def _processing_ids(payload: str) -> list[tuple[str, str]]:
    try:
        root = SafeET.fromstring(payload, forbid_dtd=True)
    except Exception:  # the instance ignores a payload it cannot read
        return []
    return [((el.text or "").strip(), el.get("state", "processing")) for el in root.iter("sys_id")]


def _compile(encoded: str, columns: Sequence[str]) -> tuple[list[str], list[str], list[str]]:
    """A subset of ServiceNow's encoded queries: a=b, a!=b, aINx,y, ORDERBYa, ORDERBYDESCa, joined by ^."""
    where: list[str] = []
    args: list[str] = []
    order: list[str] = []
    for term in filter(None, encoded.split("^")):
        if term.startswith("ORDERBYDESC"):
            order.append(f"{_column(term[11:], columns)} DESC")
        elif term.startswith("ORDERBY"):
            order.append(_column(term[7:], columns))
        elif "!=" in term:
            field, value = term.split("!=", 1)
            where.append(f"{_column(field, columns)} != ?")
            args.append(value)
        elif "=" in term:
            field, value = term.split("=", 1)
            where.append(f"{_column(field, columns)} = ?")
            args.append(value)
        elif "IN" in term:
            field, values = term.split("IN", 1)
            items = values.split(",")
            where.append(f"{_column(field, columns)} IN ({', '.join('?' for _ in items)})")
            args.extend(items)
        else:
            raise QueryError(f"unsupported query term {term[:60]!r}")
    return where, args, order


def _column(name: str, columns: Sequence[str]) -> str:
    if name not in columns:
        raise QueryError(f"unknown field {name[:60]!r}")
    return name
