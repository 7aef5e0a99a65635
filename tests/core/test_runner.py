"""The runner's cycle under trouble: instance errors with Retry-After, shutdown with work in flight."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from appliance.probes.base import MemoryAudit
from appliance.queue.answers import parse_retry_after
from appliance.queue.backoff import Backoff
from devinstance.server import Fault
from tests.helpers import (
    AGENT,
    LOOPBACK_HTTP,
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


def test_retry_after_is_honoured_then_work_resumes(dev_pki: Pki, tmp_path: Path, state_dir: Path) -> None:
    with dev_instance(dev_pki, tmp_path / "db.sqlite") as instance, http_target() as target:
        store = instance.state.store
        store.enqueue([{"agent": AGENT, "topic": "RESTProbe", "payload": params(url=f"{target}/hello")}])
        seen: list[float] = []
        instance.state.on_request = lambda method, path: "ecc_queue" in path and seen.append(time.monotonic())
        # Retry-After 1 s, while our own backoff base is 50 ms: a gap of about 1 s proves it was honoured.
        # The first fault meets the ecc_agent status update (not retried), the next two the queue.
        instance.state.faults.append(Fault(status=503, count=3, retry_after="1"))
        config = trusted(config_text(instance.url, dev_pki, LOOPBACK_HTTP), tmp_path / "c.toml")
        run_until(config, lambda: len(inputs(store)) >= 1, state_dir=state_dir)
        assert len(inputs(store)) == 1
        assert seen[1] - seen[0] >= 0.9
        assert seen[2] - seen[1] >= 0.9


def test_server_errors_back_off_and_recover(dev_pki: Pki, tmp_path: Path, state_dir: Path) -> None:
    with dev_instance(dev_pki, tmp_path / "db.sqlite") as instance, http_target() as target:
        store = instance.state.store
        store.enqueue([{"agent": AGENT, "topic": "RESTProbe", "payload": params(url=f"{target}/hello")}])
        instance.state.faults.append(Fault(status=500, count=4))
        config = trusted(config_text(instance.url, dev_pki, LOOPBACK_HTTP), tmp_path / "c.toml")
        run_until(config, lambda: len(inputs(store)) >= 1, state_dir=state_dir)
        assert len(inputs(store)) == 1


def test_shutdown_fails_in_flight_work_within_the_deadline(
    dev_pki: Pki, tmp_path: Path, state_dir: Path
) -> None:
    with dev_instance(dev_pki, tmp_path / "db.sqlite") as instance, http_target() as target:
        store = instance.state.store
        # The target answers after 60 s: an answer other than the shutdown error means we waited.
        [slow] = store.enqueue(
            [{"agent": AGENT, "topic": "RESTProbe", "payload": params(url=f"{target}/work?ms=60000")}]
        )
        config = trusted(config_text(instance.url, dev_pki, LOOPBACK_HTTP), tmp_path / "c.toml")
        claimed = lambda: store.get("ecc_queue", slow)["state"] == "processing"
        run_until(config, claimed, state_dir=state_dir, limits=fast_limits(shutdown_deadline_s=0.3))
        [row] = inputs(store)
        assert row["response_to"] == slow
        assert "shut down before this probe finished" in row["error_string"]


def test_work_left_in_processing_is_resumed_at_start(dev_pki: Pki, tmp_path: Path, state_dir: Path) -> None:
    with dev_instance(dev_pki, tmp_path / "db.sqlite") as instance, http_target() as target:
        store = instance.state.store
        [orphan, answered] = store.enqueue(
            [
                {"agent": AGENT, "topic": "RESTProbe", "payload": params(url=f"{target}/hello")}
                for _ in range(2)
            ]
        )
        # As if a previous run claimed both and crashed after answering only the second, before the
        # instance closed it. The answer goes in first: the instance's "mark outputs processed" rule
        # closes its output, so "processing" is set after it, leaving the runner's has_response check
        # as the only thing that keeps the answered one from being run and answered again.
        store.insert(
            "ecc_queue", {"agent": AGENT, "queue": "input", "topic": "RESTProbe", "response_to": answered}
        )
        store.update("ecc_queue", orphan, {"state": "processing"})
        store.update("ecc_queue", answered, {"state": "processing"})
        assert store.get("ecc_queue", answered)["state"] == "processing"
        config = trusted(config_text(instance.url, dev_pki, LOOPBACK_HTTP), tmp_path / "c.toml")
        audit = MemoryAudit()
        stats = run_until(config, lambda: len(inputs(store)) >= 2, state_dir=state_dir, audit=audit)
        responses = sorted(r["response_to"] for r in inputs(store))
        assert responses == sorted([orphan, answered])  # the answered one was not answered twice
        # Resumption is decided before the first poll, so this does not depend on when the run stopped.
        assert [f["job"] for e, f in audit.events if e == "job.resumed"] == [orphan]
        assert stats.recovered == 1


def test_backoff_grows_with_jitter_and_caps() -> None:
    b = Backoff(base_s=1.0, cap_s=8.0)
    delays = [b.next_delay() for _ in range(6)]
    assert 0.5 <= delays[0] <= 1.0
    assert 2.0 <= delays[2] <= 4.0
    assert all(d <= 8.0 for d in delays) and delays[5] >= 4.0
    assert b.next_delay(retry_after_s=30) == 30
    assert Backoff(1.0, 8.0, retry_after_cap_s=60).next_delay(retry_after_s=10_000) == 60


@pytest.mark.parametrize(("value", "expected"), [("5", 5.0), (None, None), ("soon", None)])
def test_retry_after_parsing(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value) == expected


def test_heartbeat_is_answered_while_saturated(dev_pki: Pki, tmp_path: Path, state_dir: Path) -> None:
    with dev_instance(dev_pki, tmp_path / "db.sqlite") as instance, http_target() as target:
        store = instance.state.store
        # Both slots are taken by jobs the target answers after 60 s, longer than the run lasts.
        slow = store.enqueue(
            [
                {"agent": AGENT, "topic": "RESTProbe", "payload": params(url=f"{target}/work?ms=60000")}
                for _ in range(2)
            ]
        )
        config = trusted(config_text(instance.url, dev_pki, LOOPBACK_HTTP), tmp_path / "c.toml")
        hb: list[str] = []
        answered_before_heartbeat: list[str] = []

        def saturated_then_heartbeat() -> bool:
            if not hb and all(store.get("ecc_queue", s)["state"] == "processing" for s in slow):
                hb.extend(store.enqueue([{"agent": AGENT, "topic": "HeartbeatProbe", "priority": "0"}]))
            rows = inputs(store)
            done = bool(hb) and any(r["response_to"] == hb[0] for r in rows)
            if done:
                answered_before_heartbeat.extend(r["response_to"] for r in rows if r["response_to"] in slow)
            return done

        run_until(
            config,
            saturated_then_heartbeat,
            state_dir=state_dir,
            limits=fast_limits(concurrent_probes=2, shutdown_deadline_s=0.3),
        )
        answered = {r["response_to"]: r for r in inputs(store)}
        assert hb and hb[0] in answered
        assert "<mid_operational_state>Up</mid_operational_state>" in answered[hb[0]]["payload"]
        # Answered while both slots were still busy: neither slow job had an answer yet, and both
        # were still running when the run was stopped.
        assert answered_before_heartbeat == []
        for s in slow:
            assert "shut down before this probe finished" in answered[s]["error_string"]
