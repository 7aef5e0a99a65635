"""A job enqueued on the development instance is claimed, run and answered, over real mTLS."""

from __future__ import annotations

from pathlib import Path

import defusedxml.ElementTree as SafeET

from appliance.probes.base import MemoryAudit
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


def test_http_job_is_claimed_run_and_answered(dev_pki: Pki, tmp_path: Path, state_dir: Path) -> None:
    with dev_instance(dev_pki, tmp_path / "db.sqlite") as instance, http_target() as target:
        store = instance.state.store
        [sys_id] = store.enqueue(
            [
                {
                    "agent": AGENT,
                    "topic": "RESTProbe",
                    "name": "get hello",
                    "source": "127.0.0.1",
                    "agent_correlator": "corr-1",
                    "payload": params(url=f"{target}/hello", http_method="GET"),
                }
            ]
        )
        config = trusted(config_text(instance.url, dev_pki, LOOPBACK_HTTP), tmp_path / "c.toml")
        audit = MemoryAudit()
        stats = run_until(config, lambda: len(inputs(store)) >= 1, state_dir=state_dir, audit=audit)

        [result] = inputs(store)
        assert result["response_to"] == sys_id
        assert result["agent"] == AGENT
        assert result["agent_correlator"] == "corr-1"
        assert result["topic"] == "RESTProbe" and result["name"] == "get hello"
        assert result["error_string"] == ""
        root = SafeET.fromstring(result["payload"])
        assert root.get("result_code") == "0"
        assert root.find("result").get("status") == "200"
        assert root.find("result/body").text.startswith("hello 127.0.0.1:")
        echo = {p.get("name"): p.get("value") for p in root.find("parameters")}
        assert echo["sys_id"] == sys_id and echo["url"] == f"{target}/hello"
        # The claim went through the instance's business rule, and the answer closed the output.
        claims = store.query("ecc_queue", "topic=queue.processing")
        assert len(claims) == 1 and sys_id in claims[0]["payload"]
        assert store.get("ecc_queue", sys_id)["state"] == "processed"
        assert stats.answered == 1
        events = [e for e, _ in audit.events]
        assert events[:2] == ["job.claimed", "probe.started"]
        assert "result.posted" in events


def test_many_jobs_each_answered_once(dev_pki: Pki, tmp_path: Path, state_dir: Path) -> None:
    with dev_instance(dev_pki, tmp_path / "db.sqlite") as instance, http_target() as target:
        store = instance.state.store
        ids = store.enqueue(
            [
                {
                    "agent": AGENT,
                    "topic": "RESTProbe",
                    "name": f"job {i}",
                    "source": "127.0.0.1",
                    "payload": params(url=f"{target}/hello"),
                }
                for i in range(60)
            ]
        )
        config = trusted(config_text(instance.url, dev_pki, LOOPBACK_HTTP), tmp_path / "c.toml")
        run_until(config, lambda: len(inputs(store)) >= 60, state_dir=state_dir)
        answered = [r["response_to"] for r in inputs(store)]
        assert sorted(answered) == sorted(ids)
        # Work addressed to another agent is never touched.


def test_other_agents_work_is_left_alone(dev_pki: Pki, tmp_path: Path, state_dir: Path) -> None:
    with dev_instance(dev_pki, tmp_path / "db.sqlite") as instance, http_target() as target:
        store = instance.state.store
        [other] = store.enqueue(
            [
                {
                    "agent": "mid.server.someone-else",
                    "topic": "RESTProbe",
                    "payload": params(url=f"{target}/hello"),
                }
            ]
        )
        [mine] = store.enqueue(
            [{"agent": AGENT, "topic": "RESTProbe", "payload": params(url=f"{target}/hello")}]
        )
        config = trusted(config_text(instance.url, dev_pki, LOOPBACK_HTTP), tmp_path / "c.toml")
        run_until(config, lambda: len(inputs(store)) >= 1, state_dir=state_dir)
        assert [r["response_to"] for r in inputs(store)] == [mine]
        assert store.get("ecc_queue", other)["state"] == "ready"
