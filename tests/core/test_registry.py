"""The topic registry is built from what each probe declares; re-run safety comes from the probe."""

from __future__ import annotations

from xml.sax.saxutils import quoteattr

import pytest

from appliance.app import default_probes, registry
from appliance.dispatch import rerun_safe
from appliance.limits import Limits
from appliance.probes.heartbeat import HeartbeatProbe
from appliance.queue.records import OutputRecord


def record(topic: str, **params: str) -> OutputRecord:
    body = "".join(f"<parameter name={quoteattr(k)} value={quoteattr(v)}/>" for k, v in params.items())
    return OutputRecord(
        sys_id="1" * 32, agent="mid.server.t", topic=topic, name="", source="127.0.0.1",
        payload=f"<parameters>{body}</parameters>", state="processing", agent_correlator="",
        priority="2", sys_created_on="",
    )  # fmt: skip


def test_every_topic_the_appliance_answers_comes_from_a_probe() -> None:
    probes = default_probes(lambda: {}, Limits())
    assert set(probes) == {
        "HeartbeatProbe", "RESTProbe", "HTTPClient", "SSHCommand", "SSHCommandLong", "SNMP", "Shazzam",
    }  # fmt: skip
    assert all(topic in probe.topics for topic, probe in probes.items())


def test_two_probes_cannot_claim_one_topic() -> None:
    with pytest.raises(ValueError, match="HeartbeatProbe"):
        registry(HeartbeatProbe(lambda: {}), HeartbeatProbe(lambda: {}))


@pytest.mark.parametrize(
    ("topic", "params", "safe"),
    [
        ("SSHCommand", {"name": "id"}, False),
        ("SSHCommandLong", {"name": "id"}, False),
        ("RESTProbe", {"url": "http://h/"}, True),
        ("RESTProbe", {"url": "http://h/", "http_method": "head"}, True),
        ("RESTProbe", {"url": "http://h/", "http_method": "POST"}, False),
        ("HTTPClient", {"url": "http://h/", "http_method": "DELETE"}, False),
        ("SNMP", {"oid_spec_list": "1.3.6.1.2.1.1"}, True),
        ("Shazzam", {}, True),
        ("HeartbeatProbe", {}, True),
        ("NoSuchTopic", {}, True),  # refused again the same way: an error result, nothing acts
    ],
)
def test_rerun_safety_is_the_probes_answer(topic: str, params: dict[str, str], safe: bool) -> None:
    assert rerun_safe(record(topic, **params), default_probes(lambda: {}, Limits())) is safe
