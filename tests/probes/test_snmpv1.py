"""SNMPv1 on the built-in codec gives exactly the results pysnmp gave, against the real snmpd.

Each job runs twice against the same agent: through the appliance's codec (``SnmpProbe()``) and
through pysnmp, the tests' oracle (``legacy=PysnmpOracle({"1"})``), which is how the appliance ran
v1 before. The results must be the same XML, byte for byte, once the values that move between the
two runs (time ticks and counters) are blanked; an error must be the same error with the same text.
"""

from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from appliance.errors import ProbeError
from appliance.probes.base import ProbeContext
from appliance.probes.snmp.probe import SnmpProbe
from hardening.policy import Policy
from tests.daemons import SnmpServer
from tests.probes.conftest import MemCredential, MemCredentials, loopback_rule, make_ctx
from tests.support.pysnmp_oracle import PysnmpOracle
from tests.support.snmp import job, run, varbinds

pytestmark = pytest.mark.daemons

# Values that change between the two runs (the agent's clock, interface counters moved by the runs).
_MOVING = frozenset({"SnmpTimeTicks", "SnmpCounter32", "SnmpCounter64"})


def v1_ctx(s: SnmpServer, tmp_path: Path) -> ProbeContext:
    creds = MemCredentials(
        MemCredential("v1", "snmp-community", None, (s.community.encode(),), {"version": "1"}),
        MemCredential("v1bad", "snmp-community", None, (b"wrong-community",), {"version": "1"}),
    )
    rule = loopback_rule(("snmp",), ((s.port, s.port),), ("v1", "v1bad"))
    return make_ctx(Policy([dataclasses.replace(rule, snmp_v1=True)]), creds, tmp_path)


def stable(el: ET.Element) -> str:
    for leaf in el.iter():
        if leaf.get("type") in _MOVING:
            leaf.text = "~"
    return ET.tostring(el, encoding="unicode")


def outcome(s: SnmpServer, tmp_path: Path, spec: str, probe: SnmpProbe, **kw: str) -> tuple[str, str]:
    try:
        return "result", stable(run(job(s, spec, "v1", **kw), v1_ctx(s, tmp_path), probe))
    except ProbeError as e:
        return type(e).__name__, str(e)


JOBS = {
    "get": "get 1.3.6.1.2.1.1.1.0 1.3.6.1.2.1.1.2.0 1.3.6.1.2.1.1.3.0\nget 1.3.6.1.2.1.1.6.0",
    "getnext": "getnext 1.3.6.1.2.1.1.1 1.3.6.1.2.1.1.5.0",
    "walk system": "walk iso.org.dod.internet.mgmt.mib-2.system",
    "walk interfaces": "walk 1.3.6.1.2.1.2",
    # ifXTable holds Counter64 columns, which a v1 agent leaves out of a walk.
    "walk ifXTable": "walk 1.3.6.1.2.1.31.1.1",
    "walk ipAddrTable": "walk 1.3.6.1.2.1.4.20",
    "table": "table ifTable ifIndex,ifDescr,ifType,ifMtu,ifPhysAddress",
    "filtered table": "table ifTable ifDescr(=lo),ifType(!=6),ifSpeed",
    "walks and a get": "walk 1.3.6.1.2.1.1.9.1.3\nget 1.3.6.1.2.1.1.4.0\nwalk 1.3.6.1.2.1.2.2.1.2",
    # Past the end of the agent's view: noSuchName to GetNext ends the walk (and a getnext) empty.
    "walk past the end": "walk 1.3.6.1.2.1.1\nwalk 1.3.6.1.6.3.200",
    "getnext past the end": "getnext 1.3.6.1.6.3.200",
    # v1 reports a missing instance by error-status noSuchName and its index, as an error.
    "get missing": "get 1.3.6.1.2.1.1.1.99",
    "get missing second": "get 1.3.6.1.2.1.1.1.0 1.3.6.1.2.1.1.1.99",
    "get a Counter64": "get 1.3.6.1.2.1.31.1.1.1.6.1",
}


@pytest.mark.parametrize("name", list(JOBS))
def test_v1_jobs_give_what_pysnmp_gave(snmpd: SnmpServer, tmp_path: Path, name: str) -> None:
    spec = JOBS[name]
    # use_getbulk=true is ignored for v1 (it has no GetBulk) on both paths.
    ours = outcome(snmpd, tmp_path / "codec", spec, SnmpProbe(), use_getbulk="true")
    theirs = outcome(
        snmpd, tmp_path / "pysnmp", spec, SnmpProbe(legacy=PysnmpOracle({"1"})), use_getbulk="true"
    )
    assert ours == theirs
    if name.startswith("get missing") or name == "get a Counter64":
        index = 2 if name == "get missing second" else 1
        assert ours == (
            "ProbeError",
            f"SNMP agent 127.0.0.1:{snmpd.port} answered noSuchName (index {index})",
        )
    else:
        assert ours[0] == "result"


def test_v1_walks_are_whole(snmpd: SnmpServer, tmp_path: Path) -> None:
    """The comparison above cannot pass on two empty results: the v1 walks return the agent's rows."""
    el = run(job(snmpd, "walk 1.3.6.1.2.1.2\nwalk 1.3.6.1.2.1.31.1.1", "v1"), v1_ctx(snmpd, tmp_path))
    vb = varbinds(el)
    assert len(vb) > 20
    assert any(kind == "SnmpOctetString" and text == "lo" for _, kind, text in vb)
    assert all(kind != "SnmpCounter64" for _, kind, _ in vb)  # v1 has none; snmpd skips them


def test_v1_with_the_cisco_community_index(snmpd: SnmpServer, tmp_path: Path) -> None:
    # COMMUNITY@7 sees the system group only: the interfaces walk ends at once, on both paths.
    spec = "walk 1.3.6.1.2.1.1\nwalk 1.3.6.1.2.1.2"
    kw = {"index": str(snmpd.index)}
    ours = outcome(snmpd, tmp_path / "codec", spec, SnmpProbe(), **kw)
    theirs = outcome(snmpd, tmp_path / "pysnmp", spec, SnmpProbe(legacy=PysnmpOracle({"1"})), **kw)
    assert ours == theirs and ours[0] == "result"
    assert "ifTable" not in ours[1] and "sysLocation" in ours[1]


def test_a_wrong_v1_community_gets_the_same_rejection(snmpd: SnmpServer, tmp_path: Path) -> None:
    spec = "get 1.3.6.1.2.1.1.1.0"
    outcomes = []
    for probe in (SnmpProbe(), SnmpProbe(legacy=PysnmpOracle({"1"}))):
        ctx = v1_ctx(snmpd, tmp_path)
        with pytest.raises(ProbeError) as caught:
            run(job(snmpd, spec, "v1bad", timeout="300", retries="0"), ctx, probe)
        outcomes.append(type(caught.value).__name__)
    assert outcomes[0] == outcomes[1] == "EveryCredentialRejectedError"
