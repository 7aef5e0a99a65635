"""Nothing lost, nothing doubled: kill -9 at random moments, instance outages, cluster failover, full outbox.

The appliance runs as a real process (``tests.support.appliance_main``) talking mTLS to the development
instance through a fault-injecting loopback proxy. Counts are printed for the closing note.
"""

from __future__ import annotations

import collections
import os
import random
import signal
import threading
import time
from collections.abc import Mapping
from pathlib import Path

import pytest

from appliance.errors import RunnerHaltedError
from appliance.probes.base import MemoryAudit
from devinstance import pki
from devinstance.server import Fault
from devinstance.store import Store
from hardening.audit import AuditWriteError
from tests.helpers import (
    AGENT,
    LOOPBACK_HTTP,
    TEST_SEAL_KEY,
    Pki,
    config_text,
    dev_instance,
    fast_limits,
    http_target,
    inputs,
    params,
    run_until,
    trusted,
)
from tests.support.fault_proxy import FaultProxy
from tests.support.processes import appliance_process, wait_for
from tests.support.running import claimed_with_result


def answers(store: Store) -> collections.Counter[str]:
    return collections.Counter(r["response_to"] for r in inputs(store))


def test_kill_9_and_outage_lose_nothing_and_duplicate_nothing(
    dev_pki: Pki, tmp_path: Path, state_dir: Path
) -> None:
    rng = random.Random(int(os.environ.get("MIDBOX_TEST_SEED", "7")))
    n_get, n_post, kills = 60, 20, 6
    with (
        dev_instance(dev_pki, tmp_path / "db.sqlite") as instance,
        http_target() as target,
        FaultProxy(instance.port) as proxy,
    ):
        store = instance.state.store
        methods = ["GET"] * n_get + ["POST"] * n_post
        rng.shuffle(methods)  # interleaved, so kills land on both kinds
        ids = store.enqueue(
            [
                {
                    "agent": AGENT,
                    "topic": "RESTProbe",
                    "payload": params(url=f"{target}/work?ms=300", http_method=m),
                }
                for m in methods
            ]
        )
        post_ids = {i for i, m in zip(ids, methods, strict=True) if m == "POST"}
        config = tmp_path / "c.toml"
        config.write_text(config_text(proxy.url, dev_pki, LOOPBACK_HTTP))
        for i in range(kills):
            with appliance_process(config, state_dir) as proc:
                if i == kills // 2:
                    # An instance outage while the appliance works: refused, then reset connections.
                    time.sleep(0.8)
                    proxy.set("refuse")
                    time.sleep(1.0)
                    proxy.set("reset")
                    time.sleep(1.0)
                    proxy.set("pass")
                time.sleep(rng.uniform(0.6, 2.0))
                proc.send_signal(signal.SIGKILL)
        with appliance_process(config, state_dir) as proc:
            # A generous limit: on a loaded machine the last kill's leftovers take a while; it ends early.
            assert wait_for(lambda: set(answers(store)) >= set(ids), 180), "not every job was answered"
            assert wait_for(
                lambda: all(store.get("ecc_queue", i)["state"] == "processed" for i in ids), 30
            ), "every job was answered but not every one marked processed"
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
        counts = answers(store)
        lost = [i for i in ids if counts[i] == 0]
        doubled = {i: c for i, c in counts.items() if c > 1}
        errors = [r for r in inputs(store) if r["error_string"]]
        print(
            f"\n{len(ids)} jobs, {kills} kill -9, 1 outage: {len(counts)} answered, {len(lost)} lost, "
            f"{len(doubled)} duplicated, {len(errors)} error results (interrupted non-idempotent POSTs)"
        )
        assert lost == [] and doubled == {}
        # Only POSTs may be answered with "interrupted"; GETs are simply run again, unless two kills
        # in a row interrupted the same job (a loaded machine starts the appliance slowly): then the
        # poison guard answers it instead of starting it a third time.
        assert all(
            (r["response_to"] in post_ids and "may have side effects" in r["error_string"])
            or "each time the appliance stopped before it finished" in r["error_string"]
            for r in errors
        )
        assert all(s["state"] == "processed" for s in (store.get("ecc_queue", i) for i in ids))


def test_cluster_failover_after_kill_9(dev_pki: Pki, tmp_path: Path) -> None:
    other = pki.issue(dev_pki.ca, dev_pki.directory, "appliance-b", "mid.server.edge-02", server=False)
    with dev_instance(dev_pki, tmp_path / "db.sqlite") as instance, http_target() as target:
        instance.state.clusters = [("edge-01", "edge-02")]
        instance.state.failover_after_s = 1.0
        store = instance.state.store
        ids = store.enqueue(
            [
                {"agent": AGENT, "topic": "RESTProbe", "payload": params(url=f"{target}/work?ms=300")}
                for _ in range(40)
            ]
        )
        conf_a = tmp_path / "a.toml"
        conf_a.write_text(config_text(instance.url, dev_pki, LOOPBACK_HTTP))
        conf_b = tmp_path / "b.toml"
        conf_b.write_text(
            config_text(instance.url, dev_pki, LOOPBACK_HTTP)
            .replace('name = "edge-01"', 'name = "edge-02"')
            .replace(str(dev_pki.client.cert), str(other.cert))
            .replace(str(dev_pki.client.key), str(other.key))
        )
        (tmp_path / "sa").mkdir(mode=0o700)
        (tmp_path / "sb").mkdir(mode=0o700)
        with appliance_process(conf_a, tmp_path / "sa") as a, appliance_process(conf_b, tmp_path / "sb") as b:
            assert wait_for(lambda: len(answers(store)) >= 5, 30)
            a.send_signal(signal.SIGKILL)  # mid-work: it holds claimed jobs
            assert wait_for(lambda: set(answers(store)) >= set(ids), 60), "failover did not finish the work"
            b.send_signal(signal.SIGTERM)
            b.wait(30)
        counts = answers(store)
        by_agent = collections.Counter(r["agent"] for r in inputs(store))
        print(
            f"\ncluster: {len(ids)} jobs, {instance.state.failovers} reassigned after kill -9; answers by "
            f"{dict(by_agent)}; {sum(1 for c in counts.values() if c > 1)} duplicated"
        )
        assert instance.state.failovers > 0
        assert by_agent["mid.server.edge-02"] > 0
        assert all(counts[i] == 1 for i in ids)


def test_full_outbox_stops_claiming_then_resumes(dev_pki: Pki, tmp_path: Path, state_dir: Path) -> None:
    with dev_instance(dev_pki, tmp_path / "db.sqlite") as instance, http_target() as target:
        store = instance.state.store
        ids = store.enqueue(
            [
                {"agent": AGENT, "topic": "RESTProbe", "payload": params(url=f"{target}/hello")}
                for _ in range(12)
            ]
        )
        # Results are refused for two seconds (claims still work): the outbox fills up. A time
        # window rather than a count, so a slow machine cannot use the refusals up before it fills.
        instance.state.faults.append(
            Fault(status=503, count=1_000_000, retry_after="0", match=b'"response_to"')
        )
        threading.Timer(2.0, instance.state.faults.clear).start()
        config = trusted(config_text(instance.url, dev_pki, LOOPBACK_HTTP), tmp_path / "c.toml")
        audit = MemoryAudit()
        limits = fast_limits(concurrent_probes=4, outbox_entries=3)
        run_until(
            config,
            lambda: set(answers(store)) >= set(ids),
            state_dir=state_dir,
            audit=audit,
            limits=limits,
            timeout=40,
        )
        events = [e for e, _ in audit.events]
        assert "outbox.full" in events and "outbox.resumed" in events
        assert events.index("outbox.full") < events.index("outbox.resumed")
        # While full, nothing new was claimed: no claim between "full" and the "resumed" that follows it.
        full_at = events.index("outbox.full")
        resumed_at = events.index("outbox.resumed", full_at)
        assert "job.claimed" not in events[full_at:resumed_at]
        assert "job.claimed" in events[resumed_at:], "claiming should resume once the outbox drains"
        assert all(c == 1 for c in answers(store).values()) and len(answers(store)) == 12


@pytest.mark.parametrize(
    ("kind", "extra"),
    [
        ("refuse", {}),
        ("reset", {}),
        ("delay", {"delay_s": 0.3}),
        ("truncate", {"truncate_after": 300}),
        ("blackhole", {}),
    ],
)
def test_each_fault_class_is_survived(
    dev_pki: Pki, tmp_path: Path, state_dir: Path, kind: str, extra: dict[str, float]
) -> None:
    with (
        dev_instance(dev_pki, tmp_path / "db.sqlite") as instance,
        http_target() as target,
        FaultProxy(instance.port) as proxy,
    ):
        store = instance.state.store
        ids = store.enqueue(
            [
                {"agent": AGENT, "topic": "RESTProbe", "payload": params(url=f"{target}/work?ms=100")}
                for _ in range(10)
            ]
        )
        config = trusted(config_text(proxy.url, dev_pki, LOOPBACK_HTTP), tmp_path / "c.toml")
        proxy.set(kind, **extra)
        healer = threading.Timer(1.5, proxy.set, args=("pass",))
        healer.start()
        try:
            run_until(
                config,
                lambda: set(answers(store)) >= set(ids),
                state_dir=state_dir,
                timeout=40,
                limits=fast_limits(instance_timeout_s=1.0),
            )
        finally:
            healer.cancel()
        counts = answers(store)
        assert all(counts[i] == 1 for i in ids), (kind, counts)
        assert proxy.connections > 1


class DiskFullAudit(MemoryAudit):
    """An audit log whose disk fills up after a few entries, as the real one reports it."""

    def __init__(self, after: int) -> None:
        super().__init__()
        self._left = after

    def record(self, event: str, fields: Mapping[str, object]) -> None:
        self._left -= 1
        if self._left < 0:
            raise AuditWriteError("the audit log could not be written: No space left on device")
        super().record(event, fields)


def test_an_audit_write_failure_stops_claiming_and_a_restart_loses_nothing(
    dev_pki: Pki, tmp_path: Path, state_dir: Path
) -> None:
    with dev_instance(dev_pki, tmp_path / "db.sqlite") as instance, http_target() as target:
        store = instance.state.store
        ids = store.enqueue(
            [
                {"agent": AGENT, "topic": "RESTProbe", "payload": params(url=f"{target}/work?ms=50")}
                for _ in range(20)
            ]
        )
        config = trusted(config_text(instance.url, dev_pki, LOOPBACK_HTTP), tmp_path / "c.toml")
        failing = DiskFullAudit(after=12)
        with pytest.raises(RunnerHaltedError, match="No space left on device"):
            run_until(
                config, lambda: False, state_dir=state_dir, audit=failing, limits=fast_limits(), timeout=20
            )
        # It stopped claiming: most of the work is still on the queue, untouched.
        claimed = [f for e, f in failing.events if e == "job.claimed"]
        assert len(claimed) < len(ids)
        # With the disk fixed, a restart answers every job exactly once.
        run_until(config, lambda: set(answers(store)) >= set(ids), state_dir=state_dir, limits=fast_limits())
        assert all(c == 1 for c in answers(store).values()) and set(answers(store)) == set(ids)


def test_a_kill_between_keeping_a_result_and_closing_its_journal_entry_answers_once(
    dev_pki: Pki, tmp_path: Path, state_dir: Path
) -> None:
    from appliance.interfaces import Outcome
    from appliance.queue.durable import JOURNAL, OUTBOX, Journal, Outbox, open_log

    with dev_instance(dev_pki, tmp_path / "db.sqlite") as instance, http_target() as target:
        store = instance.state.store
        record, payload = claimed_with_result(store, f"{target}/hello")
        job = record.sys_id
        # The state a kill -9 leaves between Outbox.add and Journal.remove: the job is in both.
        journal = Journal(open_log(state_dir, TEST_SEAL_KEY, JOURNAL))
        outbox = Outbox(open_log(state_dir, TEST_SEAL_KEY, OUTBOX), 100)
        journal.add(record)
        outbox.add(record, Outcome(payload, None, 1))
        journal.close()  # as the killed process's would be: one writer per log
        outbox.close()
        config = trusted(config_text(instance.url, dev_pki, LOOPBACK_HTTP), tmp_path / "c.toml")
        audit = MemoryAudit()
        run_until(config, lambda: job in answers(store), state_dir=state_dir, audit=audit, timeout=10)
        # Let any second answer arrive if one were on its way.
        run_until(config, lambda: False, state_dir=state_dir, timeout=1)
        assert answers(store)[job] == 1
        assert "job.resumed" not in [e for e, _ in audit.events]
