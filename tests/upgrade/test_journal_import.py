"""An appliance upgraded with entries in the per-file journal/ and outbox/ directories of an older
version loses none: they move into the sealed logs on open, then the old files go; a crash in
between leaves no entry lost or doubled. The old files are written by the old code (``SealedDir``),
and the crashes are a real process ending itself at the step named."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from appliance.payload import build_results
from appliance.queue.durable import JOURNAL, OUTBOX, Journal, Outbox, open_log
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


def journal_starts(state_dir: Path) -> dict[str, int]:
    with open_log(state_dir, TEST_SEAL_KEY, JOURNAL, writable=False) as log:
        return {c.record.sys_id: c.starts for c in Journal(log).entries()}


def outbox_payloads(state_dir: Path) -> dict[str, str]:
    with open_log(state_dir, TEST_SEAL_KEY, OUTBOX, writable=False) as log:
        return {p.record.sys_id: p.outcome.payload for p in Outbox(log, 100).entries()}


def expected(ids: list[str]) -> tuple[dict[str, int], dict[str, str]]:
    return (
        {sys_id: 1 + i % 2 for i, sys_id in enumerate(ids)},
        {sys_id: f"<r{i}/>" for i, sys_id in enumerate(ids) if i % 2},
    )


def test_old_entries_move_into_the_logs_in_their_order_and_the_old_files_go(state_dir: Path) -> None:
    ids = old_state(state_dir)
    for purpose in (JOURNAL, OUTBOX):
        open_log(state_dir, TEST_SEAL_KEY, purpose).close()
    starts, payloads = expected(ids)
    assert journal_starts(state_dir) == starts and outbox_payloads(state_dir) == payloads
    with open_log(state_dir, TEST_SEAL_KEY, JOURNAL) as log:
        assert list(log.names()) == ids  # oldest first, as the old directory listed them
    assert not (state_dir / JOURNAL).exists() and not (state_dir / OUTBOX).exists()


def test_a_tampered_old_entry_is_refused_and_nothing_is_removed(state_dir: Path) -> None:
    ids = old_state(state_dir)
    victim = state_dir / JOURNAL / f"{ids[2]}.sealed"
    blob = bytearray(victim.read_bytes())
    blob[-1] ^= 1
    victim.write_bytes(bytes(blob))
    with pytest.raises(SealedEntryError, match="move it aside"):
        open_log(state_dir, TEST_SEAL_KEY, JOURNAL)
    assert len(list((state_dir / JOURNAL).glob("*.sealed"))) == len(ids)
    victim.unlink()  # moved aside, as the message says: the next open is not refused as busy
    open_log(state_dir, TEST_SEAL_KEY, JOURNAL).close()
    assert sorted(journal_starts(state_dir)) == sorted(i for i in ids if i != ids[2])


CRASH = """
import os, sys
from pathlib import Path
from appliance.queue.durable import open_log
from tests.helpers import TEST_SEAL_KEY
state, purpose, step, n = Path(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
real_write, real_unlink = os.write, os.unlink
count = [0]
def write(fd, data):
    count[0] += 1
    if step == "importing" and count[0] > n:
        os._exit(9)  # n entries appended to the log, not yet settled
    return real_write(fd, data)
def unlink(path, *a, **k):
    count[0] += 1
    if step == "removing" and count[0] > n:
        os._exit(9)  # every entry in the log, n old files removed
    return real_unlink(path, *a, **k)
os.write, os.unlink = write, unlink
open_log(state, TEST_SEAL_KEY, purpose).close()
os._exit(0)
"""


@pytest.mark.parametrize(
    ("step", "n"), [("importing", 0), ("importing", 1), ("removing", 0), ("removing", 1)]
)
def test_a_crash_during_the_import_loses_and_doubles_nothing(state_dir: Path, step: str, n: int) -> None:
    ids = old_state(state_dir)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    for purpose in (JOURNAL, OUTBOX):
        proc = subprocess.run([sys.executable, "-c", CRASH, str(state_dir), purpose, step, str(n)], env=env,
                              timeout=60, check=False)  # fmt: skip
        assert proc.returncode == 9
        assert (state_dir / purpose).is_dir()  # the crash came before the old directory went
    starts, payloads = expected(ids)
    for purpose in (JOURNAL, OUTBOX):
        with open_log(state_dir, TEST_SEAL_KEY, purpose) as log:  # the next start imports the rest
            assert sorted(log.names()) == sorted(starts if purpose == JOURNAL else payloads)
    assert journal_starts(state_dir) == starts and outbox_payloads(state_dir) == payloads
    assert not (state_dir / JOURNAL).exists() and not (state_dir / OUTBOX).exists()
    # Doubled would mean two put lines for one name in a fresh log: one line per entry, plus the header.
    assert len((state_dir / "journal.log").read_bytes().splitlines()) == 1 + len(ids)


def test_an_upgraded_appliance_delivers_the_result_an_older_version_kept(
    dev_pki: Pki, tmp_path: Path, state_dir: Path
) -> None:
    with dev_instance(dev_pki, tmp_path / "db.sqlite") as instance, http_target() as target:
        store = instance.state.store
        [job] = store.enqueue(
            [{"agent": AGENT, "topic": "RESTProbe", "payload": params(url=f"{target}/hello")}]
        )
        store.update("ecc_queue", job, {"state": "processing"})
        rec = parse_output(store.get("ecc_queue", job))
        payload = build_results(
            result=None, echo_record=rec.echo(), parameters=(), probe_time_ms=1, error=None
        )
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
        assert not (state_dir / JOURNAL).exists() and not (state_dir / OUTBOX).exists()
        assert journal_starts(state_dir) == {} and outbox_payloads(state_dir) == {}
