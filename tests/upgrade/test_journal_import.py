"""An appliance upgraded with entries in the per-file journal/ and outbox/ directories of an older
version loses none and strands none: they are read where they are and go only when their job is done,
and every entry of such a job (its result too) stays where the older version looks, so an upgrade
rolled back before its first successful poll leaves the older version every result it owes. The old
files are written and read by the old code (``SealedDir``)."""

from __future__ import annotations

import dataclasses
import json
import socket
import time
from pathlib import Path

import pytest

from appliance.interfaces import Outcome
from appliance.queue.durable import JOURNAL, OUTBOX, open_durable
from appliance.queue.records import OutputRecord, parse_output
from hardening.sealbox import SealedDir, SealedEntryError, derive_key
from tests.helpers import (
    AGENT,
    LOOPBACK_HTTP,
    TEST_SEAL_KEY,
    MemoryAudit,
    Pki,
    config_text,
    dev_instance,
    http_target,
    inputs,
    params,
    run_until,
    trusted,
)
from tests.support.running import claimed_with_result


def record(i: int) -> OutputRecord:
    return parse_output({"sys_id": f"{i:032x}", "agent": AGENT, "topic": "RESTProbe", "source": "127.0.0.1"})


def old_dirs(state_dir: Path) -> tuple[SealedDir, SealedDir]:
    return (
        SealedDir(state_dir / JOURNAL, derive_key(TEST_SEAL_KEY, JOURNAL), JOURNAL),
        SealedDir(state_dir / OUTBOX, derive_key(TEST_SEAL_KEY, OUTBOX), OUTBOX),
    )


def old_put(sealed: SealedDir, rec: OutputRecord, **body: object) -> None:
    """An entry as the older version's Journal.add and Outbox.add wrote it: a JSON body, sealed in a file."""
    sealed.put(rec.sys_id, json.dumps({"record": dataclasses.asdict(rec), **body}).encode())


def old_state(state_dir: Path, jobs: int = 5) -> list[str]:
    """What an older version leaves: journal entries (one file each) and outbox entries."""
    journal, outbox = old_dirs(state_dir)
    for i in range(jobs):
        old_put(journal, record(i), starts=1 + i % 2)
        if i % 2:
            old_put(outbox, record(i), payload=f"<r{i}/>", error=None, duration_ms=i)
        time.sleep(0.01)  # the old directory lists oldest first by modification time
    return [record(i).sys_id for i in range(jobs)]


def expected(ids: list[str]) -> tuple[dict[str, int], dict[str, str]]:
    return (
        {sys_id: 1 + i % 2 for i, sys_id in enumerate(ids)},
        {sys_id: f"<r{i}/>" for i, sys_id in enumerate(ids) if i % 2},
    )


def journal_starts(state_dir: Path) -> dict[str, int]:
    journal, outbox = open_durable(state_dir, TEST_SEAL_KEY, 100)
    try:
        return {c.record.sys_id: c.starts for c in journal.entries()}
    finally:
        journal.close()
        outbox.close()


def outbox_payloads(state_dir: Path) -> dict[str, str]:
    journal, outbox = open_durable(state_dir, TEST_SEAL_KEY, 100)
    try:
        return {p.record.sys_id: p.outcome.payload for p in outbox.entries()}
    finally:
        journal.close()
        outbox.close()


def old_files(state_dir: Path) -> tuple[list[str], list[str]]:
    """What the older version would find: the names in its two directories."""
    journal, outbox = old_dirs(state_dir)
    return sorted(journal.names()), sorted(outbox.names())


def log_lines(state_dir: Path, purpose: str) -> int:
    """Lines after the header in the new version's log."""
    path = state_dir / f"{purpose}.log"
    return len(path.read_bytes().split(b"\0")[0].splitlines()) - 1 if path.exists() else 0  # zeros ahead


def test_old_entries_are_read_where_they_are_oldest_first_and_nothing_moves(state_dir: Path) -> None:
    ids = old_state(state_dir)
    starts, payloads = expected(ids)
    assert journal_starts(state_dir) == starts and outbox_payloads(state_dir) == payloads
    journal, outbox = open_durable(state_dir, TEST_SEAL_KEY, 100)
    with journal, outbox:
        assert [c.record.sys_id for c in journal.entries()] == ids  # as the old directory listed them
        assert all(sys_id in journal for sys_id in ids) and journal.count() == len(ids)
        assert outbox.count() == len(payloads)
    assert old_files(state_dir) == (sorted(ids), sorted(payloads))
    assert log_lines(state_dir, JOURNAL) == log_lines(state_dir, OUTBOX) == 0


def test_an_older_job_keeps_its_result_where_the_older_version_looks_and_new_jobs_use_the_logs(
    state_dir: Path,
) -> None:
    older, newer = record(1), record(7)
    old_put(old_dirs(state_dir)[0], older, starts=1)  # interrupted by the upgrade
    journal, outbox = open_durable(state_dir, TEST_SEAL_KEY, 100)
    with journal, outbox:
        journal.add(older, 2)  # run again after the interruption
        outbox.add(older, Outcome("<older/>", None, 5))
        journal.remove(older.sys_id, durable=False)
        journal.add(newer)
        outbox.add(newer, Outcome("<newer/>", None, 5))
        journal.settle()
        # Rolled back here: the older version finds the older job's result and no journal entry.
        assert old_files(state_dir) == ([], [older.sys_id])
        assert json.loads(old_dirs(state_dir)[1].get(older.sys_id))["payload"] == "<older/>"
        assert log_lines(state_dir, JOURNAL) == 1 and log_lines(state_dir, OUTBOX) == 1  # the newer job's
        assert {p.record.sys_id for p in outbox.entries()} == {older.sys_id, newer.sys_id}
        outbox.remove(older.sys_id)  # the instance has it
        assert old_files(state_dir) == ([], [])
        assert [p.record.sys_id for p in outbox.entries()] == [newer.sys_id]


def test_with_no_older_entries_the_old_directories_are_not_used(state_dir: Path) -> None:
    old_dirs(state_dir)  # present but empty, as an older version leaves them when all was sent
    journal, outbox = open_durable(state_dir, TEST_SEAL_KEY, 100)
    with journal, outbox:
        journal.add(record(3))
        outbox.add(record(3), Outcome("<r/>", None, 1))
    assert old_files(state_dir) == ([], [])
    assert log_lines(state_dir, JOURNAL) == log_lines(state_dir, OUTBOX) == 1


def test_a_tampered_old_entry_is_refused_naming_the_fix(state_dir: Path) -> None:
    ids = old_state(state_dir)
    victim = state_dir / JOURNAL / f"{ids[2]}.sealed"
    blob = bytearray(victim.read_bytes())
    blob[-1] ^= 1
    victim.write_bytes(bytes(blob))
    journal, outbox = open_durable(state_dir, TEST_SEAL_KEY, 100)
    with journal, outbox, pytest.raises(SealedEntryError, match="move it aside"):
        list(journal.entries())
    assert len(list((state_dir / JOURNAL).glob("*.sealed"))) == len(ids)  # nothing removed


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_upgrade_rolled_back_before_its_first_poll_leaves_the_older_version_its_results(
    dev_pki: Pki, tmp_path: Path, state_dir: Path
) -> None:
    # The older version was killed while running a job; the new one starts with the instance
    # unreachable (why an upgrade is rolled back), runs the job again and keeps its result.
    with http_target() as target:
        rec = parse_output({"sys_id": "a" * 32, "agent": AGENT, "topic": "RESTProbe", "source": "127.0.0.1",
                            "payload": params(url=f"{target}/hello")})  # fmt: skip
        old_put(old_dirs(state_dir)[0], rec, starts=1)
        url = f"https://127.0.0.1:{_closed_port()}"
        config = trusted(config_text(url, dev_pki, LOOPBACK_HTTP), tmp_path / "c.toml")
        audit = MemoryAudit()
        run_until(config, lambda: old_files(state_dir)[1] == [rec.sys_id], state_dir=state_dir, audit=audit,
                  timeout=20)  # fmt: skip
    assert "job.resumed" in [e for e, _ in audit.events]
    journal_names, outbox_names = old_files(state_dir)
    assert journal_names == [] and outbox_names == [rec.sys_id]
    kept = json.loads(old_dirs(state_dir)[1].get(rec.sys_id))  # as the older version reads it
    assert "hello" in kept["payload"] and kept["record"]["sys_id"] == rec.sys_id
    assert log_lines(state_dir, JOURNAL) == log_lines(state_dir, OUTBOX) == 0


def test_an_upgraded_appliance_delivers_the_result_an_older_version_kept(
    dev_pki: Pki, tmp_path: Path, state_dir: Path
) -> None:
    with dev_instance(dev_pki, tmp_path / "db.sqlite") as instance, http_target() as target:
        store = instance.state.store
        rec, payload = claimed_with_result(store, f"{target}/hello")
        job = rec.sys_id
        # The older version was killed after keeping the result, before closing the journal entry.
        old_journal, old_outbox = old_dirs(state_dir)
        old_put(old_journal, rec, starts=1)
        old_put(old_outbox, rec, payload=payload, error=None, duration_ms=1)
        config = trusted(config_text(instance.url, dev_pki, LOOPBACK_HTTP), tmp_path / "c.toml")
        audit = MemoryAudit()

        def answers() -> list[str]:
            return [r["response_to"] for r in inputs(store)]

        run_until(config, lambda: job in answers(), state_dir=state_dir, audit=audit, timeout=20)
        run_until(config, lambda: False, state_dir=state_dir, timeout=1)  # a second answer, were one coming
        assert answers().count(job) == 1
        assert "job.resumed" not in [e for e, _ in audit.events]  # kept, not run again
        assert old_files(state_dir) == ([], [])  # done, so gone, as the older version would have done
        assert journal_starts(state_dir) == {} and outbox_payloads(state_dir) == {}
