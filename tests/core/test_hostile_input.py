"""Hostile or malformed output records each get an error result and an audit entry, never a crash."""

from __future__ import annotations

from pathlib import Path

import defusedxml.ElementTree as SafeET
import pytest

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

XXE = """<?xml version="1.0"?>
<!DOCTYPE parameters [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<parameters><parameter name="url" value="&xxe;"/></parameters>"""

BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<parameters><parameter name="url" value="&lol3;"/></parameters>"""

DEEP = "<parameters>" + "<a>" * 100 + "</a>" * 100 + "</parameters>"


def _cases(target: str) -> list[tuple[str, str, str]]:
    """(topic, payload, expected words in the error)."""
    return [
        ("RESTProbe", XXE, "DTDs and entities are not allowed"),
        ("RESTProbe", BILLION_LAUGHS, "DTDs and entities are not allowed"),
        (
            "RESTProbe",
            "<parameters><parameter name='url' value='x'/>" + " " * 21_000_000 + "</parameters>",
            "bytes, more than",
        ),
        ("RESTProbe", "<parameters><unclosed></parameters>", "not well-formed"),
        ("RESTProbe", DEEP, "nests deeper than"),
        ("RESTProbe", "<other/>", "root must be <parameters>"),
        ("RESTProbe", params(url=f"{target}/hello", http_method="TRACE"), "is not one of"),
        ("RESTProbe", params(url="file:///etc/passwd"), "must be an http"),
        ("NoSuchTopic", params(), "topic not permitted on this appliance"),
        ("Command", params(command="id"), "topic not permitted on this appliance"),
        ("JavascriptProbe", params(script="gs.print(1)"), "topic not permitted on this appliance"),
        ("RESTProbe", params(url="http://10.255.255.1/"), "denied for http"),
    ]


def test_each_hostile_payload_gets_an_error_result(dev_pki: Pki, tmp_path: Path, state_dir: Path) -> None:
    with dev_instance(dev_pki, tmp_path / "db.sqlite") as instance, http_target() as target:
        store = instance.state.store
        cases = _cases(target)
        ids = store.enqueue(
            [
                {"agent": AGENT, "topic": topic, "name": f"case {i}", "payload": payload}
                for i, (topic, payload, _) in enumerate(cases)
            ]
        )
        # A good job after the bad ones proves the appliance is still working.
        [good] = store.enqueue(
            [{"agent": AGENT, "topic": "RESTProbe", "payload": params(url=f"{target}/hello")}]
        )
        config = trusted(config_text(instance.url, dev_pki, LOOPBACK_HTTP), tmp_path / "c.toml")
        audit = MemoryAudit()
        run_until(config, lambda: len(inputs(store)) >= len(cases) + 1, state_dir=state_dir, audit=audit)
        by_output = {r["response_to"]: r for r in inputs(store)}
        assert set(by_output) == {*ids, good}
        for sys_id, (topic, _, words) in zip(ids, cases, strict=True):
            row = by_output[sys_id]
            root = SafeET.fromstring(row["payload"])
            assert root.get("result_code") == "1", topic
            assert words in row["error_string"], (topic, row["error_string"])
            assert words in root.get("error"), topic
            assert "root:" not in row["payload"]  # /etc/passwd never read
        assert by_output[good]["error_string"] == ""
        finished = {f["job"]: f for e, f in audit.events if e == "probe.finished"}
        assert all(finished[i]["result_code"] == 1 for i in ids)
        assert sum(1 for e, _ in audit.events if e == "topic.refused") == 3
        assert sum(1 for e, _ in audit.events if e == "target.denied") == 1


@pytest.mark.parametrize("payload", ["", "   "])
def test_empty_payload_is_no_parameters(payload: str) -> None:
    from appliance.payload import parse_parameters

    assert parse_parameters(payload, 100) == ()


def test_duplicate_parameter_is_refused() -> None:
    from appliance.errors import PayloadError
    from appliance.payload import parse_parameters

    with pytest.raises(PayloadError, match="appears twice"):
        parse_parameters(
            params(url="a").replace("</parameters>", '<parameter name="url" value="b"/></parameters>'), 10_000
        )
