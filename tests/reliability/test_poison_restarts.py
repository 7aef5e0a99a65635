"""A job that keeps ending the process is answered with an error, not run again at every start.

The appliance runs as a real process; kill -9 while a read-only job runs stands in for whatever that job
did to the process. One interruption gets a re-run (a restart is not the job's fault); a second does not.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

from appliance.queue.durable import JOURNAL, Journal, open_durable, open_log
from hardening.sealbox import SealedDir, derive_key
from tests.helpers import (
    AGENT,
    LOOPBACK_HTTP,
    TEST_SEAL_KEY,
    Pki,
    config_text,
    dev_instance,
    http_target,
    inputs,
    params,
)
from tests.support.processes import appliance_process, wait_for


def starts(state_dir: Path, sys_id: str) -> int:
    # Read-only: the running appliance holds the journal; a reader changes nothing on disk.
    journal = Journal(open_log(state_dir, TEST_SEAL_KEY, JOURNAL, writable=False))
    try:
        return next((c.starts for c in journal.entries() if c.record.sys_id == sys_id), 0)
    finally:
        journal.close()


def test_a_job_interrupted_twice_is_answered_with_an_error(
    dev_pki: Pki, tmp_path: Path, state_dir: Path
) -> None:
    with dev_instance(dev_pki, tmp_path / "db.sqlite") as instance, http_target() as target:
        store = instance.state.store
        [job] = store.enqueue(
            # The target answers after 20 s: each process is killed while the job still runs, even on a
            # loaded machine (with a 3 s answer, a slow start let the job finish before the kill).
            [{"agent": AGENT, "topic": "RESTProbe", "payload": params(url=f"{target}/work?ms=20000")}]
        )
        config = tmp_path / "c.toml"
        config.write_text(config_text(instance.url, dev_pki, LOOPBACK_HTTP))
        for expected in (1, 2):
            with appliance_process(config, state_dir) as proc:
                assert wait_for(lambda e=expected: starts(state_dir, job) == e, 20), f"start {expected}"
                time.sleep(0.3)  # the job is still running
                proc.send_signal(signal.SIGKILL)
        assert not inputs(store)
        with appliance_process(config, state_dir) as proc:
            assert wait_for(lambda: bool(inputs(store)), 20)
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
        [answer] = inputs(store)
        assert answer["response_to"] == job
        assert "started 2 times" in answer["error_string"] and "not run again" in answer["error_string"]
        assert starts(state_dir, job) == 0


def test_journal_entries_of_an_older_version_load_with_one_start(tmp_path: Path) -> None:
    import json

    from appliance.queue.records import parse_output

    # Written by an older version (before start counts) into the per-file journal directory: read there.
    sealed = SealedDir(tmp_path / "journal", derive_key(TEST_SEAL_KEY, "journal"), "journal")
    record = parse_output({"sys_id": "abc", "agent": AGENT, "topic": "HeartbeatProbe"})
    old = {k: v for k, v in record.__dict__.items() if k not in ("refusal", "sequence", "response_to")}
    sealed.put("abc", json.dumps(old).encode())
    journal, outbox = open_durable(tmp_path, TEST_SEAL_KEY, 10)
    with journal, outbox:
        [entry] = journal.entries()
    assert entry.starts == 1 and entry.record == record
