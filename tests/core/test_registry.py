"""The topic registry is built from what each probe declares; re-run safety comes from the probe."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from xml.sax.saxutils import quoteattr

import pytest

from appliance.app import default_probes, registry
from appliance.dispatch import rerun_safe
from appliance.limits import Limits
from appliance.probes.heartbeat import HeartbeatProbe
from appliance.probes.lazy import LazyProbe
from appliance.queue.records import OutputRecord

ROOT = Path(__file__).resolve().parents[2]


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


def test_ssh_snmp_and_discovery_are_imported_on_their_first_job() -> None:
    # A fresh interpreter: this test process has imported every probe long ago.
    script = (
        "import sys\n"
        "from appliance.app import default_probes\n"
        "from appliance.limits import Limits\n"
        "heavy = ('appliance.probes.ssh', 'appliance.probes.snmp.probe', 'appliance.probes.tcpscan', 'paramiko')\n"
        "probes = default_probes(lambda: {}, Limits())\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
        "probes['Shazzam'].rerun_safe({})\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout.splitlines()
    assert out == ["[]", "['appliance.probes.snmp.probe', 'appliance.probes.tcpscan']"]


def test_a_lazy_probe_that_builds_another_topic_is_a_wiring_error() -> None:
    lazy = LazyProbe("heartbeat", ("Heartbeat",), lambda: HeartbeatProbe(lambda: {}))
    with pytest.raises(ValueError, match="built heartbeat"):
        lazy.rerun_safe({})
    assert not lazy.loaded
