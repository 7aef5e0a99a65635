"""A hostile or broken instance: one bad record or answer must never stop the appliance or exhaust it.

Each hostile answer is built with the development instance's answer-shaping faults (``Fault.answer``,
``Fault.drip_s``): the exact bytes a broken instance would send. After each one the appliance must still
answer a good job; none may end in RunnerHaltedError.
"""

from __future__ import annotations

import datetime as dt
import json
import resource
from pathlib import Path

import defusedxml.ElementTree as SafeET

from appliance.probes.base import MemoryAudit
from devinstance.server import Fault, table_answer
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

READY_POLL = "state=ready^ORDERBY"  # the appliance's poll for new work, not its recovery poll


def row(sys_id: str, **fields: object) -> dict[str, object]:
    base: dict[str, object] = {
        "sys_id": sys_id,
        "agent": AGENT,
        "topic": "HeartbeatProbe",
        "name": "hb",
        "source": "",
        "payload": "",
        "queue": "output",
        "state": "ready",
        "agent_correlator": "",
        "priority": "2",
        # Now: an older record would be refused by replay protection before the path a test aims at.
        "sys_created_on": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S"),
    }
    base.update(fields)
    return base


def answered(store: object) -> dict[str, dict[str, str]]:
    return {r["response_to"]: r for r in inputs(store)}  # type: ignore[arg-type]


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# 1. Poison record: a lone surrogate (legal JSON) in any field.
def test_lone_surrogate_in_any_field_is_an_error_result(
    dev_pki: Pki, tmp_path: Path, state_dir: Path
) -> None:
    poison = {
        "poison-payload": row("poison-payload", payload="<parameters>\ud800</parameters>"),
        "poison-name": row("poison-name", name="a\ud800b"),
        "poison-source": row("poison-source", source="\udfff"),
        "poison-topic": row("poison-topic", topic="Heartbeat\ud800Probe"),
        "poison-correlator": row("poison-correlator", agent_correlator="\ud800"),
    }
    with dev_instance(dev_pki, tmp_path / "db.sqlite") as instance:
        store = instance.state.store
        instance.state.faults.append(
            Fault(200, 1, path=READY_POLL, answer=table_answer(list(poison.values())))
        )
        [good] = store.enqueue([{"agent": AGENT, "topic": "HeartbeatProbe"}])
        config = trusted(config_text(instance.url, dev_pki), tmp_path / "c.toml")
        audit = MemoryAudit()
        run_until(config, lambda: len(answered(store)) >= 6, state_dir=state_dir, audit=audit, timeout=15)
        got = answered(store)
        assert good in got and got[good]["error_string"] == ""
        for sys_id in poison:
            assert sys_id in got, sys_id
            assert "not valid text" in got[sys_id]["error_string"], got[sys_id]["error_string"]
            SafeET.fromstring(got[sys_id]["payload"])
            assert "\ud800" not in json.dumps(got[sys_id])  # sanitised before it went back
        finished = {f["job"]: f for e, f in audit.events if e == "probe.finished"}
        assert all(finished[s]["result_code"] == 1 for s in poison)


# 3. One record with an unusable sys_id must not stop every poll.
def test_a_bad_sys_id_is_skipped_and_a_bad_field_answered(
    dev_pki: Pki, tmp_path: Path, state_dir: Path
) -> None:
    bad_ids = ["../../x", "a\nb", "", "x" * 65, "a b"]
    with dev_instance(dev_pki, tmp_path / "db.sqlite") as instance:
        store = instance.state.store
        [good] = store.enqueue([{"agent": AGENT, "topic": "HeartbeatProbe"}])
        rows: list[dict[str, object]] = [row(s) for s in bad_ids]
        rows.append(row("no-sys-id-key"))
        del rows[-1]["sys_id"]
        rows.append(row("bad-payload-type", payload=["not", "text"]))
        rows.append(row("bad-name-type", name={"nested": {"deep": 1}}))
        rows.append(store.get("ecc_queue", good))  # type: ignore[arg-type]
        instance.state.faults.append(Fault(200, 1, path=READY_POLL, answer=table_answer(rows)))
        config = trusted(config_text(instance.url, dev_pki), tmp_path / "c.toml")
        audit = MemoryAudit()
        run_until(
            config,
            lambda: {"bad-payload-type", "bad-name-type", good} <= set(answered(store)),
            state_dir=state_dir,
            audit=audit,
            timeout=15,
        )
        got = answered(store)
        assert got[good]["error_string"] == ""
        assert "'payload' is not text" in got["bad-payload-type"]["error_string"]
        assert "'name' is not text" in got["bad-name-type"]["error_string"]
        skipped = [f for e, f in audit.events if e == "record.skipped"]
        assert len(skipped) == len(bad_ids) + 1
        assert all("sys_id" in f["reason"] for f in skipped)


# 4. An answer over the cap: the batch shrinks; a single record too large is answered with an error.
def test_an_answer_over_the_cap_shrinks_the_batch(dev_pki: Pki, tmp_path: Path, state_dir: Path) -> None:
    cap = 1_000_000
    with dev_instance(dev_pki, tmp_path / "db.sqlite") as instance, http_target() as target:
        store = instance.state.store
        [huge] = store.enqueue(
            [
                {
                    "agent": AGENT,
                    "topic": "RESTProbe",
                    "priority": "1",
                    "payload": params(url=target, pad="h" * cap),
                }
            ]
        )
        # Even its head is too large for one answer: it is answered by its sys_id alone.
        [huge_name] = store.enqueue(
            [{"agent": AGENT, "topic": "RESTProbe", "priority": "1", "name": "n" * (cap + 1)}]
        )
        ids = store.enqueue(
            [
                {
                    "agent": AGENT,
                    "topic": "RESTProbe",
                    "payload": params(url=f"{target}/hello", pad="p" * 300_000),
                }
                for _ in range(4)
            ]
        )
        seen_limits: list[str] = []
        instance.state.on_request = lambda m, p: seen_limits.append(p) if "state%3Dready" in p else None
        config = trusted(config_text(instance.url, dev_pki, LOOPBACK_HTTP), tmp_path / "c.toml")
        run_until(
            config,
            lambda: {huge, huge_name, *ids} <= set(answered(store)),
            state_dir=state_dir,
            limits=fast_limits(instance_response_bytes=cap),
            timeout=20,
        )
        got = answered(store)
        assert "larger than" in got[huge]["error_string"]
        assert got[huge]["name"] == store.get("ecc_queue", huge)["name"]  # type: ignore[index]
        assert "larger than" in got[huge_name]["error_string"] and got[huge_name]["name"] == ""
        assert all(got[i]["error_string"] == "" for i in ids)
        assert any("sysparm_limit=1&" in p for p in seen_limits)


# 5. Deeply nested JSON from the instance.
def test_deep_json_is_an_instance_error(dev_pki: Pki, tmp_path: Path, state_dir: Path) -> None:
    deep = b'{"result":' + b"[" * 200_000 + b"]" * 200_000 + b"}"
    with dev_instance(dev_pki, tmp_path / "db.sqlite") as instance:
        store = instance.state.store
        [good] = store.enqueue([{"agent": AGENT, "topic": "HeartbeatProbe"}])
        instance.state.faults.append(Fault(200, 2, path=READY_POLL, answer=deep))
        config = trusted(config_text(instance.url, dev_pki), tmp_path / "c.toml")
        run_until(config, lambda: good in answered(store), state_dir=state_dir, timeout=15)
        assert good in answered(store)
        assert not instance.state.faults  # both deep answers were read and refused


def test_json_depth_check() -> None:
    from appliance.queue.answers import json_too_deep

    assert not json_too_deep(b'{"result":[{"a":"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\\"]]"}]}', 4)
    assert json_too_deep(b'{"result":[[[[[1]]]]]}', 4)
    assert not json_too_deep(b'{"result":[[[1]]]}', 4)


# 7. More rows than asked for: the concurrency cap holds.
def test_more_rows_than_asked_do_not_break_the_concurrency_cap(
    dev_pki: Pki, tmp_path: Path, state_dir: Path
) -> None:
    with dev_instance(dev_pki, tmp_path / "db.sqlite") as instance, http_target() as target:
        store = instance.state.store
        ids = store.enqueue(
            [
                {"agent": AGENT, "topic": "RESTProbe", "payload": params(url=f"{target}/work?ms=400")}
                for _ in range(8)
            ]
        )
        rows = [store.get("ecc_queue", i) for i in ids]
        # The first poll (for two) gets all eight, and the first two of them twice over.
        instance.state.faults.append(
            Fault(200, 1, path=READY_POLL, answer=table_answer([*rows[:2], *rows]))  # type: ignore[list-item]
        )
        config = trusted(config_text(instance.url, dev_pki, LOOPBACK_HTTP), tmp_path / "c.toml")
        audit = MemoryAudit()
        run_until(
            config,
            lambda: set(ids) <= set(answered(store)),
            state_dir=state_dir,
            audit=audit,
            limits=fast_limits(concurrent_probes=2),
            timeout=20,
        )
        running = peak = 0
        for event, _ in audit.events:
            running += {"probe.started": 1, "probe.finished": -1}.get(event, 0)
            peak = max(peak, running)
        assert peak <= 2
        assert sorted(r["response_to"] for r in inputs(store)) == sorted(ids)  # each once


# 8. Echoed fields with C0 controls still give well-formed results.
def test_control_characters_in_echoed_fields_give_well_formed_results(
    dev_pki: Pki, tmp_path: Path, state_dir: Path
) -> None:
    with dev_instance(dev_pki, tmp_path / "db.sqlite") as instance:
        store = instance.state.store
        [job] = store.enqueue(
            [
                {
                    "agent": AGENT,
                    "topic": "HeartbeatProbe",
                    "name": "n\x01\x08",
                    "source": "s\x1f",
                    "agent_correlator": "c\x00\x0b",
                }
            ]
        )
        config = trusted(config_text(instance.url, dev_pki), tmp_path / "c.toml")
        run_until(config, lambda: job in answered(store), state_dir=state_dir, timeout=15)
        root = SafeET.fromstring(answered(store)[job]["payload"])
        echoed = {p.get("name"): p.get("value") for p in root.iter("parameter")}
        assert echoed["name"] == "n\ufffd\ufffd" and echoed["agent_correlator"] == "c\ufffd\ufffd"


def test_build_results_is_xml_safe_and_capped() -> None:
    import xml.etree.ElementTree as ET

    from appliance.limits import MAX_PAYLOAD_BYTES
    from appliance.payload import build_results

    result = ET.Element("result")
    result.text = "x\x02" + "y" * MAX_PAYLOAD_BYTES
    payload = build_results(
        result=result,
        echo_record={"name": "a\x01", "source": "\ud800"},
        parameters=(("p\x03", "v\x04"),),
        probe_time_ms=1,
        error=None,
    )
    assert len(payload.encode()) <= MAX_PAYLOAD_BYTES
    root = SafeET.fromstring(payload)
    assert root.get("result_code") == "1" and "too large" in root.get("error", "")
    small = build_results(
        result=None, echo_record={"name": "a\x01"}, parameters=(), probe_time_ms=1, error="e\x05"
    )
    assert SafeET.fromstring(small).get("error") == "e\ufffd"


# 10. Bounds on the instance's answers.
def test_a_dripping_answer_is_cut_by_the_request_deadline(
    dev_pki: Pki, tmp_path: Path, state_dir: Path
) -> None:
    with dev_instance(dev_pki, tmp_path / "db.sqlite") as instance:
        store = instance.state.store
        [good] = store.enqueue([{"agent": AGENT, "topic": "HeartbeatProbe"}])
        # 400 bytes at 50 ms each: 20 s, though every read returns within the 1 s read timeout.
        drip = table_answer([row("d" * 32, name="x" * 200)])
        instance.state.faults.append(Fault(200, 1, path=READY_POLL, answer=drip, drip_s=0.05))
        config = trusted(config_text(instance.url, dev_pki), tmp_path / "c.toml")
        run_until(
            config,
            lambda: good in answered(store),
            state_dir=state_dir,
            limits=fast_limits(instance_timeout_s=1.0),
            timeout=12,
        )
        assert good in answered(store)


def test_retry_after_is_capped_at_minutes() -> None:
    from appliance.limits import MAX_RETRY_AFTER_S, Limits
    from appliance.queue.backoff import Backoff

    assert MAX_RETRY_AFTER_S <= 600
    assert Limits().retry_after_cap_s <= MAX_RETRY_AFTER_S
    assert Backoff(1.0, 8.0).next_delay(retry_after_s=3600) <= MAX_RETRY_AFTER_S


def test_rss_stays_bounded_through_hostile_answers(dev_pki: Pki, tmp_path: Path, state_dir: Path) -> None:
    """Thirty hostile answers in a row (each a different kind) cost no lasting memory."""
    with dev_instance(dev_pki, tmp_path / "db.sqlite") as instance:
        store = instance.state.store
        hostile = [
            table_answer([row("s0", name="\ud800" * 1000, payload=["x"] * 1000)]),
            table_answer([row("../" * 10)] * 500),
            b'{"result":' + b"[" * 50_000 + b"]" * 50_000 + b"}",
            b'{"result": "not a list"}',
            b"not json at all",
        ]
        for i in range(30):
            instance.state.faults.append(Fault(200, 1, path=READY_POLL, answer=hostile[i % len(hostile)]))
        [good] = store.enqueue([{"agent": AGENT, "topic": "HeartbeatProbe"}])
        config = trusted(config_text(instance.url, dev_pki), tmp_path / "c.toml")
        before = rss_mb()
        run_until(config, lambda: good in answered(store), state_dir=state_dir, timeout=30)
        assert good in answered(store) and not instance.state.faults
        assert rss_mb() - before < 100
