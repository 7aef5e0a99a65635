"""What the instance sees: the health summary in HeartbeatProbe answers, one ecc_agent_issue record
per problem (resolved when it clears), last_refreshed on the MID record; on the development instance."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

from tests.helpers import AGENT, NAME, Pki, config_text, dev_instance, inputs, run_until, trusted


def test_heartbeat_carries_the_health_summary(dev_pki: Pki, tmp_path: Path, state_dir: Path) -> None:
    with dev_instance(dev_pki, tmp_path / "db.sqlite") as instance:
        store = instance.state.store
        store.enqueue([{"agent": AGENT, "topic": "HeartbeatProbe", "payload": "<parameters/>"}])
        config = trusted(config_text(instance.url, dev_pki), tmp_path / "c.toml")
        run_until(config, lambda: len(inputs(store)) >= 1, state_dir=state_dir)
        [answer] = inputs(store)
        payload = answer["payload"]
        for element in ("mid_operational_state", "midbox_state", "binary_sha256", "config_sha256", "jobs_ok"):
            assert f"<{element}>" in payload, element
        assert f"<config_version>{config.version}</config_version>" in payload
        assert f"<config_sha256>{config.sha256}</config_sha256>" in payload
        assert "<version>" in payload  # in the answer, never on ecc_agent
        [agent] = store.query("ecc_agent", f"name={NAME}")
        assert agent["version"] == ""


def test_a_problem_is_one_open_issue_record_and_is_resolved_when_it_clears(
    dev_pki: Pki, tmp_path: Path, state_dir: Path
) -> None:
    with dev_instance(dev_pki, tmp_path / "db.sqlite") as instance:
        store = instance.state.store
        text = config_text(instance.url, dev_pki)
        good = trusted(text, tmp_path / "c.toml")
        soon = dt.datetime.now(dt.UTC) + dt.timedelta(days=2)
        # A Config is made only by verification, so the expiring one is signed as such.
        expiring = trusted(
            re.sub(r"^expires = .*$", f"expires = {soon:%Y-%m-%dT%H:%M:%SZ}", text, count=1, flags=re.M),
            tmp_path / "c.toml",
        )
        issues = lambda: store.query("ecc_agent_issue", "")
        run_until(expiring, lambda: bool(issues()), state_dir=state_dir)
        run_until(expiring, lambda: False, state_dir=state_dir, timeout=1.0)  # a restart: no second record
        [agent] = store.query("ecc_agent", f"name={NAME}")
        [issue] = issues()
        assert issue["mid_server"] == agent["sys_id"] and issue["source"] == "midbox.config_expiring"
        assert issue["state"] == "new" and "sign a new one" in issue["message"]
        assert agent["last_refreshed"]
        run_until(good, lambda: issues()[0]["state"] == "resolved", state_dir=state_dir)
        [issue] = issues()
        assert issue["state"] == "resolved"
