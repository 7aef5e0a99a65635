"""The result envelope (what an input echoes of its output), ``skip_sensor`` on the appliance's own
inputs, and the topics and parameters midbox refuses for want of a public payload layout."""

from __future__ import annotations

import asyncio
from pathlib import Path

import defusedxml.ElementTree as SafeET

from appliance.checkpoints import anchor_checkpoint as _checkpoint
from appliance.limits import MAX_INSTANCE_RESPONSE_BYTES
from appliance.payload import ECHO_FIELDS, build_results
from appliance.probes.base import MemoryAudit
from appliance.queue.client import EccClient
from appliance.queue.records import OUTPUT_FIELDS, parse_output
from appliance.queue.transport import instance_client
from appliance.scope import RESULT_FORMAT_JSON_REFUSED, UNPUBLISHED_TOPICS
from hardening.audit import load_or_create_signing_key, parse_checkpoint_xml, verify_checkpoint
from tests.audit.conftest import write_log
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


def echoed(payload: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for p in SafeET.fromstring(payload).iterfind("parameters/parameter"):
        out.setdefault(p.get("name"), []).append(p.get("value"))
    return out


def test_the_poll_asks_for_every_field_it_echoes() -> None:
    record = parse_output({"sys_id": "abc"})
    assert set(record.echo()) == set(ECHO_FIELDS)
    # ecc_queue is the output's own sys_id under the name public results use.
    assert set(ECHO_FIELDS) - {"ecc_queue"} <= set(OUTPUT_FIELDS)


def test_a_job_parameter_cannot_shadow_an_echoed_field() -> None:
    record = parse_output({"sys_id": "real", "topic": "SNMP", "sequence": "00042"})
    payload = build_results(
        result=None,
        echo_record=record.echo(),
        parameters=(("sys_id", "forged"), ("ecc_queue", "forged"), ("skip_sensor", "true")),
        probe_time_ms=1,
        error=None,
    )
    got = echoed(payload)
    assert got["sys_id"] == ["real"] and got["ecc_queue"] == ["real"]
    assert got["skip_sensor"] == ["true"] and got["sequence"] == ["00042"]
    assert "response_to" not in got  # echoed only when the output has one


def test_inputs_echo_the_output_record(dev_pki: Pki, tmp_path: Path, state_dir: Path) -> None:
    with dev_instance(dev_pki, tmp_path / "db.sqlite") as instance, http_target() as target:
        store = instance.state.store
        [plain, chained] = store.enqueue(
            [
                {"agent": AGENT, "topic": "RESTProbe", "payload": params(url=f"{target}/hello")},
                {
                    "agent": AGENT,
                    "topic": "RESTProbe",
                    "response_to": "0123456789abcdef",
                    "payload": params(url=f"{target}/hello", skip_sensor="true"),
                },
            ]
        )
        config = trusted(config_text(instance.url, dev_pki, LOOPBACK_HTTP), tmp_path / "c.toml")
        run_until(config, lambda: len(inputs(store)) >= 2, state_dir=state_dir)
        by_output = {r["response_to"]: r for r in inputs(store)}
        for sys_id in (plain, chained):
            output = store.get("ecc_queue", sys_id)
            assert output is not None
            got = echoed(by_output[sys_id]["payload"])
            assert got["ecc_queue"] == [sys_id] and got["sys_id"] == [sys_id]
            assert got["sequence"] == [output["sequence"]] and output["sequence"]
            assert got["sys_created_on"] == [output["sys_created_on"]]
        chained_echo = echoed(by_output[chained]["payload"])
        assert chained_echo["response_to"] == ["0123456789abcdef"]
        assert chained_echo["skip_sensor"] == ["true"]
        assert "skip_sensor" not in echoed(by_output[plain]["payload"])
        # The stand-in honours skip_sensor; the other input waits in ready for its sensor.
        assert by_output[chained]["state"] == "processed"
        assert by_output[plain]["state"] == "ready"
        assert [r["sys_id"] for r in store.sense()] == [by_output[plain]["sys_id"]]
        assert store.get("ecc_queue", by_output[plain]["sys_id"])["state"] == "processed"  # type: ignore[index]


def test_a_checkpoint_input_carries_skip_sensor(dev_pki: Pki, tmp_path: Path, state_dir: Path) -> None:
    with dev_instance(dev_pki, tmp_path / "db.sqlite") as instance:
        config = trusted(config_text(instance.url, dev_pki), tmp_path / "c.toml")
        audit = write_log(state_dir, 3)
        try:
            asyncio.run(_checkpoint(config, audit, state_dir))
        finally:
            audit.close()
        [row] = instance.state.store.query("ecc_queue", "queue=input^topic=midbox.audit.checkpoint")
    assert echoed(row["payload"]) == {"skip_sensor": ["true"]}
    assert row["state"] == "processed"  # no sensor left it waiting in ready
    # The anchored checkpoint still verifies, envelope and all.
    key = load_or_create_signing_key(state_dir)
    assert verify_checkpoint(parse_checkpoint_xml(row["payload"].encode()), key.public_key()).size == 4


def test_post_input_keeps_a_payload_s_own_parameters(dev_pki: Pki, tmp_path: Path) -> None:
    with dev_instance(dev_pki, tmp_path / "db.sqlite") as instance:
        config = trusted(config_text(instance.url, dev_pki), tmp_path / "c.toml")
        payload = '<results probe_time="0" result_code="0"><parameters><parameter name="a" value="1"/></parameters></results>'

        async def post() -> None:
            client = EccClient(
                instance_client(config.instance, fast_limits(), name=config.appliance.name),
                name="edge-01",
                max_response_bytes=MAX_INSTANCE_RESPONSE_BYTES,
            )
            try:
                await client.post_input(topic="midbox.test", name="midbox.test", payload=payload)
            finally:
                await client.aclose()

        asyncio.run(post())
        [row] = instance.state.store.query("ecc_queue", "queue=input^topic=midbox.test")
    assert echoed(row["payload"]) == {"a": ["1"], "skip_sensor": ["true"]}


def test_topics_and_formats_without_a_public_layout_are_refused(
    dev_pki: Pki, tmp_path: Path, state_dir: Path
) -> None:
    cases = [
        (
            {"topic": "MultiProbe", "name": "Linux - Identity"},
            params(),
            "'MultiProbe'",
            "simple classic probes",
        ),
        (
            {"topic": "Multiprobe", "name": "SNMP - Identity"},
            params(),
            "'MultiProbe'",
            "simple classic probes",
        ),
        (
            {"topic": "HorizontalDiscoveryProbe", "name": "Pattern Launcher: Linux Server"},
            params(),
            "Horizontal Pattern probe",
            "classic probes",
        ),
        # A pattern launch known by its name alone gets the same answer.
        (
            {"topic": "SomePatternTopic", "name": "Pattern Launcher: X"},
            params(),
            "Horizontal Pattern",
            "classic",
        ),
        (
            {"topic": "SNMP", "name": "SNMP - Classify"},
            params(result_format="JSON"),
            "result_format=JSON",
            "remove",
        ),
        (
            {"topic": "RESTProbe", "name": "r"},
            params(url="http://127.0.0.1:9/", result_format="json"),
            "JSON",
            "remove",
        ),
    ]
    with dev_instance(dev_pki, tmp_path / "db.sqlite") as instance, http_target() as target:
        store = instance.state.store
        ids = store.enqueue(
            [{"agent": AGENT, "source": "127.0.0.1", "payload": p, **f} for f, p, _, _ in cases]
        )
        [good] = store.enqueue(
            [{"agent": AGENT, "topic": "RESTProbe", "payload": params(url=f"{target}/hello")}]
        )
        config = trusted(config_text(instance.url, dev_pki, LOOPBACK_HTTP), tmp_path / "c.toml")
        audit = MemoryAudit()
        run_until(config, lambda: len(inputs(store)) >= len(cases) + 1, state_dir=state_dir, audit=audit)
        by_output = {r["response_to"]: r for r in inputs(store)}
    for sys_id, (fields, _, names, fix) in zip(ids, cases, strict=True):
        row = by_output[sys_id]
        root = SafeET.fromstring(row["payload"])
        assert root.get("result_code") == "1", fields
        assert names in row["error_string"] and fix in row["error_string"], row["error_string"]
        assert "docs/servicenow.md" in root.get("error", "")
        assert echoed(row["payload"])["ecc_queue"] == [sys_id]
    assert by_output[good]["error_string"] == ""
    refused = {f["job"]: f for e, f in audit.events if e == "topic.refused"}
    assert set(refused) == set(ids)
    assert {refused[i]["reason"] for i in ids[-2:]} == {"result_format=JSON"}
    assert not [f for e, f in audit.events if e == "probe.started" and f["job"] in ids]
    # One message for the cause, whichever topic met it.
    assert (
        by_output[ids[-1]]["error_string"] == by_output[ids[-2]]["error_string"] == RESULT_FORMAT_JSON_REFUSED
    )
    assert by_output[ids[0]]["error_string"] == UNPUBLISHED_TOPICS["MultiProbe"]


def test_refusal_messages_are_one_line_and_name_the_fix() -> None:
    for text in (*UNPUBLISHED_TOPICS.values(), RESULT_FORMAT_JSON_REFUSED):
        assert "\n" not in text and "docs/servicenow.md" in text and len(text) < 500
