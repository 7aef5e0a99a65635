"""Hostile SNMP agents (tests/support/hostile_snmp.py): each gives a clean result, bounded in bytes and time.

The agent is a raw UDP responder built in the test, not snmpd: a real agent never answers a walk with
60 KB values, a walk that never advances, garbage or a flood.
"""

from __future__ import annotations

import asyncio
import dataclasses
import tracemalloc
import xml.etree.ElementTree as ET
from pathlib import Path

import defusedxml.ElementTree as SafeET
import pytest

from appliance.errors import ProbeError
from appliance.limits import MAX_PAYLOAD_BYTES, Limits
from appliance.probes.snmp.probe import SnmpProbe
from hardening.policy import Policy
from tests.helpers import (
    AGENT,
    Pki,
    config_text,
    dev_instance,
    fast_limits,
    inputs,
    params,
    run_until,
    trusted,
)
from tests.probes.conftest import MemCredential, MemCredentials, loopback_rule, make_ctx, make_job
from tests.support.hostile_snmp import HostileSnmpAgent, hostile_snmp_agent
from tests.support.pysnmp_oracle import PysnmpOracle

VALUE = 60_000  # one varbind per answer, as big as a datagram allows
CAP = 2_000_000  # a result cap small enough that a walk past it shows in memory


def creds() -> MemCredentials:
    return MemCredentials(
        MemCredential("v2", "snmp-community", None, (b"public",)),
        MemCredential("v1", "snmp-community", None, (b"public",), {"version": "1"}),
    )


def snmp_job(agent: HostileSnmpAgent, spec: str = "walk 1.3.6.1.2.1", alias: str = "v2", **kw: str):  # type: ignore[no-untyped-def]
    return make_job(
        "SNMP", "snmp", "127.0.0.1", oid_spec_list=spec, port=str(agent.port), credential=alias, **kw
    )


def run_probe(
    agent: HostileSnmpAgent, tmp_path: Path, limits: Limits, fast: bool = True, alias: str = "v2", **kw: str
) -> ET.Element:
    """One job against ``agent`` with the community ``alias`` (v2, or v1 under a rule with snmp_v1)."""
    rule = loopback_rule(("snmp",), ((agent.port, agent.port),), ("v2", "v1"))
    ctx = make_ctx(Policy([dataclasses.replace(rule, snmp_v1=True)]), creds(), tmp_path, limits)
    probe = SnmpProbe(legacy=None if fast else PysnmpOracle({"2c"}))

    async def go() -> ET.Element:
        try:
            return await probe.run(snmp_job(agent, alias=alias, **kw), ctx)
        finally:
            await probe.aclose()

    return asyncio.run(go())


def traced_peak(
    agent: HostileSnmpAgent, tmp_path: Path, fast: bool = True, alias: str = "v2"
) -> tuple[ET.Element, int]:
    tracemalloc.start()
    try:
        result = run_probe(agent, tmp_path, Limits(snmp_result_bytes=CAP), fast, alias)
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize(
    ("fast", "alias"), [(True, "v2"), (False, "v2"), (True, "v1")], ids=["fast-v2c", "pysnmp-v2c", "codec-v1"]
)
def test_huge_varbinds_are_cut_by_bytes_not_held(tmp_path: Path, fast: bool, alias: str) -> None:
    """Issue 13 item 2: 1,500 answers of 60 KB were all held before the byte cap was looked at."""
    with hostile_snmp_agent("huge", value_bytes=100, varbinds=3) as agent:
        _, baseline = traced_peak(agent, tmp_path, fast, alias)  # the probe itself (pysnmp loads its MIBs)
    with hostile_snmp_agent("huge", value_bytes=VALUE, varbinds=1500) as agent:
        result, peak = traced_peak(agent, tmp_path, fast, alias)
    assert result.get("truncated") == "true"
    size = len(ET.tostring(result))
    assert CAP - 2 * VALUE < size <= CAP + 200
    # The walk stops asking at the page that passes the cap (the last page is the one cut).
    assert agent.stats.requests <= CAP // VALUE + 3, agent.stats.requests
    grown = peak - baseline
    print(
        f"\n{agent.stats.requests} requests, traced memory +{grown / 1e6:.1f} MB for a {CAP / 1e6:.0f} MB cap"
    )
    # The rows held and the tree built from them, each about the cap, plus a few MiB.
    assert grown < 2 * CAP + 4 * 2**20, grown


@pytest.mark.parametrize(
    ("mode", "error"),
    [
        ("loop", "non-increasing OID"),
        ("garbage", "no SNMP response"),
        ("spoof", "no SNMP response"),
    ],
)
def test_broken_agents_end_in_a_clean_error(tmp_path: Path, mode: str, error: str) -> None:
    with hostile_snmp_agent(mode) as agent:
        with pytest.raises(ProbeError, match=error):
            run_probe(agent, tmp_path, Limits(), timeout="200", retries="1")
    assert agent.stats.requests <= 2 + (mode == "loop"), agent.stats.requests  # retries, no more


@pytest.mark.parametrize(
    ("mode", "settings", "error", "requests"),
    [
        ("loop", {}, "non-increasing OID", 2),
        ("garbage", {}, "no SNMP response", 2),
        ("spoof", {}, "no SNMP response", 2),
        # A v2c answer to a v1 request, or a v1 answer carrying what only v2c has, is not the answer.
        ("huge", {"reply_version": 1, "value_bytes": 10}, "no SNMP response", 2),
        ("counter64", {}, "no SNMP response", 2),
        ("exception", {}, "no SNMP response", 2),
        # v1's coarse errors end the job with the status named, after the one request that got it.
        ("huge", {"status": 1, "value_bytes": 10}, r"answered tooBig \(index 1\)", 1),
        ("huge", {"status": 5, "value_bytes": 10}, r"answered genErr \(index 1\)", 1),
        ("huge", {"status": 99, "value_bytes": 10}, r"answered error 99 \(index 1\)", 1),
    ],
    ids=["loop", "garbage", "spoof", "v2c-reply", "counter64", "exception", "tooBig", "genErr", "unknown"],
)
def test_broken_v1_agents_end_in_a_clean_error(
    tmp_path: Path, mode: str, settings: dict[str, int], error: str, requests: int
) -> None:
    with hostile_snmp_agent(mode, **settings) as agent:
        with pytest.raises(ProbeError, match=error):
            run_probe(agent, tmp_path, Limits(), alias="v1", timeout="200", retries="1")
    assert agent.stats.requests <= requests, agent.stats.requests  # retries, no more
    assert agent.stats.pdus == {0xA1}  # GetNext: a v1 walk


@pytest.mark.parametrize(("alias", "pdus"), [("v1", {0xA1}), ("v2", {0xA5})])
def test_a_v1_walk_never_sends_getbulk(tmp_path: Path, alias: str, pdus: set[int]) -> None:
    with hostile_snmp_agent("huge", value_bytes=10, varbinds=5) as agent:
        result = run_probe(agent, tmp_path, Limits(), alias=alias, use_getbulk="true")
    assert [e for e in result.iter() if e.get("type")]  # the walk got its rows
    assert agent.stats.pdus == pdus


def test_a_flood_of_answers_is_dropped_not_buffered(tmp_path: Path) -> None:
    with hostile_snmp_agent("huge", value_bytes=100, varbinds=3) as agent:
        _, baseline = traced_peak(agent, tmp_path)
    with hostile_snmp_agent("flood", value_bytes=VALUE, varbinds=100) as agent:
        result, peak = traced_peak(agent, tmp_path)
    assert result.get("truncated") == "true"
    assert peak - baseline < 2 * CAP + 4 * 2**20, peak - baseline


LOOPBACK_SNMP = """
[[allow]]
cidr = "127.0.0.0/8"
probes = ["snmp"]
ports = ["1-65535"]
credentials = ["v2"]
"""


def test_a_hostile_agent_never_makes_a_payload_over_the_instance_cap(
    dev_pki: Pki, tmp_path: Path, state_dir: Path
) -> None:
    """End to end with the default caps: 1,500 x 60 KB (90 MB) is answered truncated, under 20 MB."""
    with (
        dev_instance(dev_pki, tmp_path / "db.sqlite") as instance,
        hostile_snmp_agent("huge", value_bytes=VALUE, varbinds=1500) as agent,
    ):
        store = instance.state.store
        payload = params(oid_spec_list="walk 1.3.6.1.2.1", port=str(agent.port), credential="v2")
        ids = store.enqueue(
            [{"agent": AGENT, "topic": "SNMP", "source": "127.0.0.1", "payload": payload} for _ in range(2)]
        )
        # A heartbeat after them shows the appliance still answers.
        [beat] = store.enqueue([{"agent": AGENT, "topic": "HeartbeatProbe"}])
        config = trusted(config_text(instance.url, dev_pki, LOOPBACK_SNMP), tmp_path / "c.toml")
        run_until(
            config,
            lambda: {*ids, beat} <= {r["response_to"] for r in inputs(store)},
            state_dir=state_dir,
            limits=fast_limits(concurrent_probes=2, probe_timeout_s=60.0),
            credentials=creds(),
            timeout=90,
        )
        by_id = {r["response_to"]: r for r in inputs(store)}
    assert beat in by_id
    limit = Limits().snmp_result_bytes
    for job in ids:
        posted = by_id[job]["payload"]
        assert len(posted.encode()) <= MAX_PAYLOAD_BYTES
        result = SafeET.fromstring(posted).find("result")
        assert by_id[job]["error_string"] == "" and result is not None and result.get("truncated") == "true"
        assert limit - 2 * VALUE < len(posted.encode()) < limit + 100_000
    assert agent.stats.requests <= 2 * (limit // VALUE + 3)
