"""The MID record (ecc_agent) over real mTLS: created on a fresh instance, Up at start and Down at stop,
never a ``version`` write, and an instance that refuses the record does not stop the work."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from devinstance.server import DevInstance, Fault
from tests.helpers import (
    AGENT,
    LOOPBACK_HTTP,
    NAME,
    Pki,
    config_text,
    dev_instance,
    http_target,
    inputs,
    params,
    run_until,
    trusted,
)


def agent_rows(instance: DevInstance) -> list[dict[str, str]]:
    return instance.state.store.query("ecc_agent", f"name={NAME}")


def run_jobs(instance: DevInstance, p: Pki, tmp_path: Path, state_dir: Path, count: int = 2) -> None:
    store = instance.state.store
    with http_target() as target:
        store.enqueue(
            [
                {"agent": AGENT, "topic": "RESTProbe", "payload": params(url=f"{target}/hello")}
                for _ in range(count)
            ]
        )
        config = trusted(config_text(instance.url, p, LOOPBACK_HTTP), tmp_path / "c.toml")
        run_until(config, lambda: len(inputs(store)) >= count, state_dir=state_dir)


@pytest.fixture
def instance(dev_pki: Pki, tmp_path: Path) -> Iterator[DevInstance]:
    with dev_instance(dev_pki, tmp_path / "db.sqlite") as inst:
        yield inst


def test_a_fresh_instance_gets_the_record_from_the_mid(
    instance: DevInstance, dev_pki: Pki, tmp_path: Path, state_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert agent_rows(instance) == []  # the default, as on a fresh instance
    caplog.set_level(logging.INFO)
    seen_up: list[dict[str, str]] = []
    with http_target() as target:
        store = instance.state.store
        store.enqueue([{"agent": AGENT, "topic": "RESTProbe", "payload": params(url=f"{target}/hello")}])
        config = trusted(config_text(instance.url, dev_pki, LOOPBACK_HTTP), tmp_path / "c.toml")

        def answered() -> bool:
            seen_up.extend(r for r in agent_rows(instance) if r["status"] == "Up")
            return len(inputs(store)) >= 1

        run_until(config, answered, state_dir=state_dir)
    [row] = agent_rows(instance)
    assert seen_up and seen_up[0]["started"]  # Up while it ran
    assert row["status"] == "Down" and row["stopped"]  # Down after the stop
    assert row["host_name"] and row["ip_address"] == "127.0.0.1" and row["last_refreshed"]
    assert row["validated"] == "false"  # an admin's to give
    assert row["version"] == ""
    methods = [m for m, _ in instance.state.agent_writes]
    # POST (Up), then PATCHes: last_refreshed while it runs (issue 18), Down at stop.
    assert methods[0] == "POST" and methods[1:] and set(methods[1:]) == {"PATCH"}
    assert instance.state.agent_writes[0][1]["name"] == NAME
    assert all("version" not in body and "validated" not in body for _, body in instance.state.agent_writes)
    [message] = refusal_logs(caplog)  # says once why no work will come yet
    assert "not validated" in message and "docs/servicenow.md" in message


def test_a_pre_created_record_is_updated_not_duplicated(
    instance: DevInstance, dev_pki: Pki, tmp_path: Path, state_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    instance.state.store.ensure_agent(NAME, validated=True)
    caplog.set_level(logging.INFO)
    run_jobs(instance, dev_pki, tmp_path, state_dir)
    assert refusal_logs(caplog) == []  # validated: nothing to say
    [row] = agent_rows(instance)
    assert row["status"] == "Down" and row["validated"] == "true" and row["version"] == ""
    # Up, last_refreshed while running (issue 18), Down: all PATCHes, no POST.
    assert set(m for m, _ in instance.state.agent_writes) == {"PATCH"}
    assert all("version" not in body for _, body in instance.state.agent_writes)


def refusal_logs(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name.startswith("appliance") and "ecc_agent" in r.getMessage()
    ]


def test_a_refused_record_write_is_logged_once_and_work_goes_on(
    instance: DevInstance, dev_pki: Pki, tmp_path: Path, state_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    instance.state.refuse_agent_writes = True
    caplog.set_level(logging.INFO)
    run_jobs(instance, dev_pki, tmp_path, state_dir, count=3)
    rows = inputs(instance.state.store)
    assert len(rows) == 3 and all(r["error_string"] == "" for r in rows)
    assert agent_rows(instance) == []
    # One refused write at start; the stop does not try again (no retry storm).
    assert [m for m, _ in instance.state.agent_writes] == ["POST"]
    [message] = refusal_logs(caplog)
    assert "business rule or an ACL" in message and "docs/servicenow.md" in message


def test_a_refused_record_read_is_logged_once_and_work_goes_on(
    instance: DevInstance, dev_pki: Pki, tmp_path: Path, state_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The runner's first request is the look-up of its ecc_agent record.
    instance.state.faults.append(Fault(status=403, count=1))
    caplog.set_level(logging.INFO)
    run_jobs(instance, dev_pki, tmp_path, state_dir)
    assert len(inputs(instance.state.store)) == 2
    assert instance.state.agent_writes == []
    assert len(refusal_logs(caplog)) == 1


def test_the_dev_instance_cli_validates_a_record(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from devinstance.cli import main as dev_main
    from devinstance.store import Store

    store = Store(tmp_path / "instance.db")
    store.ensure_agent(NAME)
    store.close()
    assert dev_main(["validate", "--dir", str(tmp_path), "--agent", NAME]) == 0
    assert "validated true" in capsys.readouterr().out
    assert dev_main(["validate", "--dir", str(tmp_path), "--agent", NAME, "--invalidate"]) == 0
    assert "validated false" in capsys.readouterr().out
    assert dev_main(["validate", "--dir", str(tmp_path), "--agent", "nobody"]) == 1
