"""The stand-in's queue finds a record by sys_id, and an agent's ready outputs in claim order, through an
index, as a real instance does: without them every answered job scanned the whole table, and the
benchmark's 10,000-queued-jobs row measured SQLite (131 jobs/s) instead of the appliance (338)."""

from __future__ import annotations

from pathlib import Path

from devinstance.store import TABLES, Store, _compile


def _plan(store: Store, sql: str, args: list[str]) -> str:
    return " ".join(str(row[-1]) for row in store._db.execute(f"EXPLAIN QUERY PLAN {sql}", args))


def test_a_record_is_found_by_sys_id_and_outputs_in_claim_order_without_a_scan(tmp_path: Path) -> None:
    store = Store(tmp_path / "db.sqlite")
    try:
        store.enqueue([{"agent": "mid.server.a", "topic": "RESTProbe"}] * 50)
        by_id = _plan(store, "UPDATE ecc_queue SET state='processed' WHERE sys_id=? AND queue='output' AND agent=?",
                      ["x", "mid.server.a"])  # fmt: skip
        assert "USING INDEX ecc_queue_sys_id" in by_id
        where, args, order = _compile(
            "agent=mid.server.a^queue=output^state=ready^ORDERBYpriority^ORDERBYsys_created_on",
            TABLES["ecc_queue"],
        )
        claim = _plan(
            store,
            f"SELECT sys_id FROM ecc_queue WHERE {' AND '.join(where)} ORDER BY {', '.join(order)}",
            args,
        )
        assert "USING INDEX ecc_queue_claim" in claim and "TEMP B-TREE" not in claim  # no sort per poll
    finally:
        store.close()
