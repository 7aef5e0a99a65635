"""A sent result's outbox entry goes only once its journal entry's removal is durable, without a journal
sync of its own per result (``appliance.queue.durable.OutboxCloser``): it waits for the next journal
sync, which under load the next job's journal entry makes, and at rest one sync covers all that wait.

A power loss cannot be staged here, so the tests pin the order through the data syncs themselves:
each outbox removal is checked, as it happens, against the journal syncs finished by then."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import hardening.sealedlog
from appliance.interfaces import Outcome
from appliance.queue.durable import JOURNAL, OUTBOX, OutboxCloser, open_durable
from appliance.queue.records import OutputRecord
from hardening.sealbox import SealedDir, derive_key
from tests.helpers import TEST_SEAL_KEY

OUTCOME = Outcome("<results/>", None, 1)


def record(i: int) -> OutputRecord:
    return OutputRecord(
        sys_id=f"{i:032x}", agent="mid.server.a", topic="RESTProbe", name="http", source="127.0.0.1",
        payload="<parameters/>", state="ready", agent_correlator="", priority="2", sys_created_on="",
    )  # fmt: skip


class Watched:
    """The journal and outbox of a state dir, with every data sync counted per log, and every outbox
    removal checked: the journal's lines written before it must all be covered by a finished sync."""

    def __init__(self, state_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.journal, self.outbox = open_durable(state_dir, TEST_SEAL_KEY, 10_000)
        self.closer = OutboxCloser(self.journal, self.outbox)
        self.syncs = 0
        self.early: list[str] = []
        real_sync = hardening.sealedlog._datasync
        journal_log = self.journal._log

        def counting(fd: int) -> None:
            if fd == journal_log._fd:
                self.syncs += 1
            real_sync(fd)

        monkeypatch.setattr(hardening.sealedlog, "_datasync", counting)
        real_remove = self.outbox.remove

        def checked_remove(sys_id: str, *, durable: bool = True) -> None:
            if self.journal.durable_upto() < self.journal.written():
                self.early.append(sys_id)
            real_remove(sys_id, durable=durable)

        monkeypatch.setattr(self.outbox, "remove", checked_remove)

    def job(self, i: int) -> None:
        """One job in the runner's order, its result then sent: journaled (and what waits released),
        kept in the outbox, journal entry removed lazily, the instance confirms."""
        self.journal.add(record(i))
        self.closer.release()
        self.outbox.add(record(i), OUTCOME)
        self.journal.remove(record(i).sys_id, durable=False)
        self.closer.close(record(i).sys_id)

    def close(self) -> None:
        self.journal.close()
        self.outbox.close()


def test_a_sent_result_waits_for_the_next_journal_sync_then_goes(
    state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = Watched(state_dir, monkeypatch)
    w.job(1)
    assert record(1).sys_id in w.outbox and w.closer.waiting() == 1  # its journal removal is not durable
    assert w.closer.unsent() == 0  # sent: the health file does not count it as waiting to be sent
    w.outbox.add(record(9), OUTCOME)  # a result not sent yet
    assert w.closer.unsent() == 1
    w.job(2)  # the next job's journal entry syncs the journal
    assert record(1).sys_id not in w.outbox and record(2).sys_id in w.outbox
    assert w.early == []
    w.close()


def test_at_rest_one_journal_sync_covers_every_result_waiting(
    state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = Watched(state_dir, monkeypatch)
    for i in range(5):
        w.journal.add(record(i))
        w.outbox.add(record(i), OUTCOME)
        w.journal.remove(record(i).sys_id, durable=False)
    for i in range(5):
        w.closer.close(record(i).sys_id)
    before = w.syncs
    w.closer.settle()
    assert w.syncs == before + 1 and w.outbox.count() == 0 and w.closer.waiting() == 0
    w.closer.settle()
    assert w.syncs == before + 1  # nothing waits: no sync
    assert w.early == []
    w.close()


def test_a_steady_stream_costs_one_journal_sync_per_job(
    state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Before, each sent result cost a journal sync of its own besides the job's journal entry.
    w = Watched(state_dir, monkeypatch)
    for i in range(100):
        w.job(i)
    w.closer.settle()
    assert w.syncs <= 101, w.syncs
    assert w.outbox.count() == 0 and w.journal.count() == 0 and w.early == []
    w.close()


def test_an_older_versions_job_is_closed_at_once_with_its_directory_synced(
    state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = SealedDir(state_dir / JOURNAL, derive_key(TEST_SEAL_KEY, JOURNAL), JOURNAL)
    old.put(record(9).sys_id, json.dumps({"record": {"sys_id": record(9).sys_id}, "starts": 1}).encode())
    w = Watched(state_dir, monkeypatch)
    w.outbox.add(record(9), OUTCOME)  # kept where the older version looks
    w.journal.remove(record(9).sys_id, durable=False)
    w.closer.close(record(9).sys_id)
    assert w.outbox.count() == 0 and w.closer.waiting() == 0
    assert list(SealedDir(state_dir / OUTBOX, derive_key(TEST_SEAL_KEY, OUTBOX), OUTBOX).names()) == []
    w.close()
