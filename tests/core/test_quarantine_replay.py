"""Quarantine and replay protection through the running appliance and the development instance."""

from __future__ import annotations

import datetime as dt
import threading
import time
from pathlib import Path

from appliance.probes.base import MemoryAudit
from appliance.quarantine import Quarantine
from tests.helpers import (
    AGENT,
    LOOPBACK_HTTP,
    Pki,
    config_text,
    dev_instance,
    http_target,
    inputs,
    params,
    run_until,
    trusted,
)


def events(audit: MemoryAudit, name: str) -> list[dict[str, object]]:
    return [f for e, f in audit.events if e == name]


def answered(store: object) -> dict[str, dict[str, str]]:
    return {r["response_to"]: r for r in inputs(store)}  # type: ignore[arg-type]


def test_quarantine_stops_probes_keeps_heartbeats_and_survives_restart(
    dev_pki: Pki, tmp_path: Path, state_dir: Path
) -> None:
    Quarantine(state_dir).set("incident 42")
    with dev_instance(dev_pki, tmp_path / "db.sqlite") as instance, http_target() as target:
        store = instance.state.store
        [probe, beat] = store.enqueue(
            [
                {"agent": AGENT, "topic": "RESTProbe", "payload": params(url=f"{target}/hello")},
                {"agent": AGENT, "topic": "HeartbeatProbe"},
            ]
        )
        config = trusted(config_text(instance.url, dev_pki, LOOPBACK_HTTP), tmp_path / "c.toml")
        audit = MemoryAudit()
        run_until(config, lambda: beat in answered(store), state_dir=state_dir, audit=audit)
        time.sleep(0.2)  # several polls
        assert beat in answered(store) and probe not in answered(store)
        assert store.get("ecc_queue", probe)["state"] == "ready"  # not claimed: another MID may take it
        assert [f["reason"] for f in events(audit, "quarantine.on")] == ["incident 42"]
        # A restart keeps it (and does not audit it twice) ...
        audit2 = MemoryAudit()
        run_until(config, lambda: False, state_dir=state_dir, audit=audit2, timeout=0.5)
        assert probe not in answered(store) and events(audit2, "quarantine.on") == []
        # ... until it is lifted, while stopped: the next start audits that and runs the job.
        Quarantine(state_dir).clear("resolved")
        audit3 = MemoryAudit()
        run_until(config, lambda: probe in answered(store), state_dir=state_dir, audit=audit3)
        assert answered(store)[probe]["error_string"] == ""
        assert events(audit3, "quarantine.off") == [{"reason": "resolved", "by": "cli"}]


def test_a_dropped_file_stops_probes_within_one_poll(dev_pki: Pki, tmp_path: Path, state_dir: Path) -> None:
    with dev_instance(dev_pki, tmp_path / "db.sqlite") as instance, http_target() as target:
        store = instance.state.store
        [first] = store.enqueue(
            [{"agent": AGENT, "topic": "RESTProbe", "payload": params(url=f"{target}/hello")}]
        )
        config = trusted(config_text(instance.url, dev_pki, LOOPBACK_HTTP), tmp_path / "c.toml")
        audit = MemoryAudit()
        later: list[str] = []

        def drop_then_enqueue() -> None:
            while first not in answered(store):
                time.sleep(0.01)
            (state_dir / "quarantine").write_text("maintenance window\n")  # by hand, as an admin would
            time.sleep(0.05 * 2)  # one poll interval (0.05 s) and a margin
            later.extend(
                store.enqueue(
                    [{"agent": AGENT, "topic": "RESTProbe", "payload": params(url=f"{target}/hello")}]
                )
            )

        helper = threading.Thread(target=drop_then_enqueue)
        helper.start()
        run_until(config, lambda: False, state_dir=state_dir, audit=audit, timeout=1.5)
        helper.join()
        assert later and later[0] not in answered(store)
        assert events(audit, "quarantine.on") == [{"reason": "maintenance window", "by": "file"}]


def test_stale_future_and_replayed_records_are_refused(dev_pki: Pki, tmp_path: Path, state_dir: Path) -> None:
    now = dt.datetime.now(dt.UTC)
    fmt = "%Y-%m-%d %H:%M:%S"
    with dev_instance(dev_pki, tmp_path / "db.sqlite") as instance, http_target() as target:
        store = instance.state.store
        url = params(url=f"{target}/hello")
        [fresh, stale, ahead] = store.enqueue([{"agent": AGENT, "topic": "RESTProbe", "payload": url}] * 3)
        store.update("ecc_queue", stale, {"sys_created_on": (now - dt.timedelta(hours=25)).strftime(fmt)})
        store.update("ecc_queue", ahead, {"sys_created_on": (now + dt.timedelta(hours=3)).strftime(fmt)})
        config = trusted(config_text(instance.url, dev_pki, LOOPBACK_HTTP), tmp_path / "c.toml")
        audit = MemoryAudit()
        run_until(config, lambda: len(inputs(store)) >= 3, state_dir=state_dir, audit=audit)
        got = answered(store)
        assert got[fresh]["error_string"] == ""
        assert "created 25.0 h ago, more than the 24.0 h" in got[stale]["error_string"]
        assert "in the future" in got[ahead]["error_string"]
        # The instance (or whoever holds it) sets the answered record back to ready: it is not run again,
        # in this run or after a restart (the run ledger is on disk).
        store.update("ecc_queue", fresh, {"state": "ready"})
        run_until(config, lambda: len(inputs(store)) >= 4, state_dir=state_dir, audit=audit)
        replies = [r for r in inputs(store) if r["response_to"] == fresh]
        assert len(replies) == 2 and "already run by this appliance" in replies[1]["error_string"]
        reasons = [str(f["reason"]) for f in events(audit, "replay.refused")]
        assert len(reasons) == 3 and sum("already run" in r for r in reasons) == 1


def test_the_replay_window_is_configurable(dev_pki: Pki, tmp_path: Path, state_dir: Path) -> None:
    with dev_instance(dev_pki, tmp_path / "db.sqlite") as instance, http_target() as target:
        store = instance.state.store
        [old] = store.enqueue(
            [{"agent": AGENT, "topic": "RESTProbe", "payload": params(url=f"{target}/hello")}]
        )
        two_min = (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=2)).strftime("%Y-%m-%d %H:%M:%S")
        store.update("ecc_queue", old, {"sys_created_on": two_min})
        text = config_text(instance.url, dev_pki, LOOPBACK_HTTP).replace(
            "max_concurrent_probes = 16", "max_concurrent_probes = 16\nmax_job_age_s = 60"
        )
        run_until(trusted(text, tmp_path / "c.toml"), lambda: len(inputs(store)) >= 1, state_dir=state_dir)
        assert "more than the 60 s this appliance runs" in answered(store)[old]["error_string"]
