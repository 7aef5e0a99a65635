"""The SNMP probe against a real net-snmp snmpd on 127.0.0.1 (v1, v2c and v3 authPriv)."""

from __future__ import annotations

import asyncio
import subprocess
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from appliance.errors import PayloadError, ProbeError, TargetDeniedError
from appliance.limits import Limits
from appliance.probes.base import ProbeContext
from devinstance.snmpresponse import SNMPResponse
from hardening.policy import Policy
from tests.daemons import SnmpServer
from tests.probes.conftest import MemCredential, MemCredentials, loopback_rule, make_ctx, make_job
from tests.support.snmp import PROBE_KW, creds, ctx_for, job, new_probe, run, varbinds

pytestmark = pytest.mark.daemons

SYS_DESCR = "1.3.6.1.2.1.1.1.0"
SYS_OBJECT_ID = "1.3.6.1.2.1.1.2.0"
SYS_UPTIME = "1.3.6.1.2.1.1.3.0"
SYS_LOCATION = "1.3.6.1.2.1.1.6.0"


@pytest.fixture(autouse=True, params=[(), ("1", "2c")], ids=["codec", "pysnmp-v1v2c"])
def v2c_path(request: pytest.FixtureRequest) -> None:
    """Every test runs with v1/v2c through the built-in codec and through pysnmp (the tests' oracle)."""
    PROBE_KW["oracle"] = request.param


def sorted_oids(vb: list[tuple[str, str, str]]) -> list[str]:
    return sorted((v[0] for v in vb), key=lambda o: tuple(int(a) for a in o.split(".")))


def netsnmp(s: SnmpServer, tool: str, *args: str) -> list[str]:
    out = subprocess.run(
        [tool, "-v2c", "-c", s.community, "-On", "-Oq", "-Ot", "-Ox", f"udp:127.0.0.1:{s.port}", *args],
        capture_output=True,
        check=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "MIBS": ""},
    ).stdout
    return [line.split(" ", 1)[0].lstrip(".") for line in out.splitlines() if line.strip()]


@pytest.mark.parametrize(
    ("alias", "version"), [("v2", "2c"), ("v3", "3"), ("v3x", "3"), ("v2", ""), ("v3", "")]
)
def test_get_with_each_version(snmpd: SnmpServer, tmp_path: Path, alias: str, version: str) -> None:
    # Without a 'version' parameter the version follows the credential (community: v2c, usm: v3).
    el = run(
        job(snmpd, f"get {SYS_DESCR} {SYS_OBJECT_ID} {SYS_UPTIME}\nget {SYS_LOCATION}", alias, version),
        ctx_for(snmpd, tmp_path),
    )
    vb = varbinds(el)
    assert [v[0] for v in vb] == [SYS_DESCR, SYS_OBJECT_ID, SYS_UPTIME, SYS_LOCATION]
    assert vb[0][1] == "SnmpOctetString" and vb[0][2].startswith("Linux")
    assert vb[1][1] == "SnmpObjectId" and vb[1][2].startswith(".1.3.6.1.4.1.")
    assert vb[2][1] == "SnmpTimeTicks" and int(vb[2][2]) >= 0
    assert vb[3] == (SYS_LOCATION, "SnmpOctetString", "midbox test rack")


def test_get_missing_instance_is_typed(snmpd: SnmpServer, tmp_path: Path) -> None:
    vb = varbinds(run(job(snmpd, "get 1.3.6.1.2.1.1.1.99"), ctx_for(snmpd, tmp_path)))
    assert vb == [("1.3.6.1.2.1.1.1.99", "SnmpNoSuchInstance", "")]


def test_getnext(snmpd: SnmpServer, tmp_path: Path) -> None:
    vb = varbinds(run(job(snmpd, "getnext 1.3.6.1.2.1.1.1"), ctx_for(snmpd, tmp_path)))
    assert [v[0] for v in vb] == [SYS_DESCR]


@pytest.mark.parametrize("bulk", ["true", "false"])
def test_walk_matches_net_snmp(snmpd: SnmpServer, tmp_path: Path, bulk: str) -> None:
    el = run(job(snmpd, "walk 1.3.6.1.2.1.2", use_getbulk=bulk), ctx_for(snmpd, tmp_path))
    ours = sorted_oids(varbinds(el))  # the tree groups table cells by row; the walk went by column
    theirs = netsnmp(snmpd, "snmpbulkwalk", "1.3.6.1.2.1.2")
    assert len(ours) > 10
    assert ours == theirs


def test_walk_over_v3_matches_v2c(snmpd: SnmpServer, tmp_path: Path) -> None:
    v2 = varbinds(run(job(snmpd, "walk 1.3.6.1.2.1.1.9"), ctx_for(snmpd, tmp_path)))
    v3 = varbinds(run(job(snmpd, "walk 1.3.6.1.2.1.1.9", "v3", "3"), ctx_for(snmpd, tmp_path)))
    assert v2 and [v[0] for v in v2] == [v[0] for v in v3]
    assert v2[0][0].startswith("1.3.6.1.2.1.1.9.1.")


def test_table_columns(snmpd: SnmpServer, tmp_path: Path) -> None:
    # ifTable: ifIndex (1) and ifDescr (2); loopback "lo" is always there.
    vb = varbinds(run(job(snmpd, "table 1.3.6.1.2.1.2.2 1 2"), ctx_for(snmpd, tmp_path)))
    indexes = [v for v in vb if v[0].startswith("1.3.6.1.2.1.2.2.1.1.")]
    descrs = [v for v in vb if v[0].startswith("1.3.6.1.2.1.2.2.1.2.")]
    assert indexes and len(indexes) == len(descrs)
    assert all(v[1] == "SnmpInt32" for v in indexes)
    assert "lo" in [v[2] for v in descrs]


def test_varbind_cap_truncates(snmpd: SnmpServer, tmp_path: Path) -> None:
    el = run(job(snmpd, "walk 1.3.6.1.2.1"), ctx_for(snmpd, tmp_path, limits=Limits(snmp_varbinds=25)))
    assert len(varbinds(el)) == 25
    assert el.get("truncated") == "true"


def test_wrong_community_times_out_with_a_clear_error(snmpd: SnmpServer, tmp_path: Path) -> None:
    start = time.monotonic()
    with pytest.raises(ProbeError, match=r"no SNMP response .*wrong community") as e:
        run(job(snmpd, f"get {SYS_DESCR}", "v2bad", timeout="300", retries="1"), ctx_for(snmpd, tmp_path))
    assert time.monotonic() - start < 5
    assert "wrong-community" not in str(e.value)


def test_wrong_v3_auth_key_is_an_error(snmpd: SnmpServer, tmp_path: Path) -> None:
    with pytest.raises(ProbeError, match=r"SNMPv3 authentication .* failed") as e:
        run(
            job(snmpd, f"get {SYS_DESCR}", "v3bad", "3", timeout="500", retries="0"), ctx_for(snmpd, tmp_path)
        )
    assert "wrong-auth-pass" not in str(e.value)


def test_version_and_credential_type_must_agree(snmpd: SnmpServer, tmp_path: Path) -> None:
    with pytest.raises(ProbeError, match="needs an snmp-usm"):
        run(job(snmpd, f"get {SYS_DESCR}", "v2", "3"), ctx_for(snmpd, tmp_path))
    with pytest.raises(ProbeError, match="not an SNMP credential"):
        run(job(snmpd, f"get {SYS_DESCR}", "sshpw", "2c"), ctx_for(snmpd, tmp_path))


def test_denied_target_and_credential(snmpd: SnmpServer, tmp_path: Path) -> None:
    c = creds(snmpd)
    ctx = make_ctx(Policy([]), c, tmp_path)
    with pytest.raises(TargetDeniedError):
        run(job(snmpd, f"get {SYS_DESCR}"), ctx)
    ctx = make_ctx(Policy([loopback_rule(("snmp",), ((snmpd.port, snmpd.port),), ("v3",))]), c, tmp_path)
    with pytest.raises(TargetDeniedError, match="credential 'v2'"):
        run(job(snmpd, f"get {SYS_DESCR}"), ctx)
    assert c.lookups == []


@pytest.mark.parametrize(
    "spec",
    [
        "",
        "get",
        "get sysDescrX.0",
        "walk 1.3 1.4",
        "frob 1.3.6",
        "get 1.3.6.1.-1",
        "table 1.3.6.1.2.1.2.2",
        "get 9.x.1",
        "get 1.3.6." + "1." * 200 + "1",
        "table 1.3.6.1.2.1.2.2 x",
        "table ifTable ifDescr(=lo",
        "table ifTable sysDescr",
        "table sysDescr ifIndex",
    ],
)
def test_malformed_spec_is_a_payload_error(snmpd: SnmpServer, tmp_path: Path, spec: str) -> None:
    with pytest.raises(PayloadError):
        run(job(snmpd, spec), ctx_for(snmpd, tmp_path))


def test_many_concurrent_gets_on_one_engine(snmpd: SnmpServer, tmp_path: Path) -> None:
    ctx = ctx_for(snmpd, tmp_path)
    probe = new_probe(per_agent=8)

    async def go() -> list[ET.Element]:
        try:
            return await asyncio.gather(*(probe.run(job(snmpd, f"get {SYS_DESCR}"), ctx) for _ in range(200)))
        finally:
            await probe.aclose()

    results = asyncio.run(go())
    assert all(varbinds(r)[0][0] == SYS_DESCR for r in results)


def test_cancel_ends_a_waiting_request(snmpd: SnmpServer, tmp_path: Path) -> None:
    # The wrong community is never answered; the request would wait 60 s for its timeout. Cancelled,
    # it ends as cancelled (not as that timeout's error), and the probe answers the next job.
    ctx = ctx_for(snmpd, tmp_path)
    probe = new_probe()

    async def go() -> ET.Element:
        task = asyncio.create_task(
            probe.run(job(snmpd, f"get {SYS_DESCR}", "v2bad", timeout="60000", retries="0"), ctx)
        )
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 30)
        try:
            return await probe.run(job(snmpd, f"get {SYS_DESCR}"), ctx)
        finally:
            await probe.aclose()

    assert varbinds(asyncio.run(go()))[0][0] == SYS_DESCR


def test_a_rotated_community_takes_effect_on_the_same_engine(snmpd: SnmpServer, tmp_path: Path) -> None:
    # pysnmp caches communities by index; a new secret under the same alias must not be ignored.
    rule = loopback_rule(("snmp",), ((snmpd.port, snmpd.port),), ("rot",))
    old = MemCredentials(MemCredential("rot", "snmp-community", None, (b"old-community",)))
    new = MemCredentials(MemCredential("rot", "snmp-community", None, (snmpd.community.encode(),)))
    probe = new_probe()
    j = job(snmpd, f"get {SYS_DESCR}", "rot", timeout="300", retries="0")

    async def go() -> ET.Element:
        try:
            with pytest.raises(ProbeError, match="no SNMP response"):
                await probe.run(j, make_ctx(Policy([rule]), old, tmp_path))
            return await probe.run(j, make_ctx(Policy([rule]), new, tmp_path))
        finally:
            await probe.aclose()

    assert varbinds(asyncio.run(go()))[0][0] == SYS_DESCR


def test_requests_in_flight_per_agent_are_capped(snmpd: SnmpServer, tmp_path: Path) -> None:
    ctx = ctx_for(snmpd, tmp_path)
    probe = new_probe(per_agent=3)
    peak = 0

    async def go() -> None:
        nonlocal peak
        jobs = [
            asyncio.create_task(probe.run(job(snmpd, "walk 1.3.6.1.2.1.2", use_getbulk="false"), ctx))
            for _ in range(20)
        ]
        while not all(t.done() for t in jobs):
            for slot in probe._agent_slots.values():
                peak = max(peak, 3 - slot.sem._value)
            await asyncio.sleep(0)
        await asyncio.gather(*jobs)
        assert probe._agent_slots == {}  # an idle agent is forgotten
        await probe.aclose()

    asyncio.run(go())
    assert peak == 3


# ---- ServiceNow's spec syntax and result layout --------------------------------------------------

SYSTEM = "iso.org.dod.internet.mgmt.mib-2.system"
IF_TABLE = "iso.org.dod.internet.mgmt.mib-2.interfaces.ifTable"


def response(el: ET.Element) -> SNMPResponse:
    return SNMPResponse.from_payload(ET.tostring(el, encoding="unicode"))


def test_walk_of_system_by_name_reads_like_a_sensor(snmpd: SnmpServer, tmp_path: Path) -> None:
    el = run(job(snmpd, f"walk {SYSTEM}"), ctx_for(snmpd, tmp_path))
    chain = [e.tag for e in el.iter()][:9]
    assert chain == ["result", "snmp", "iso", "org", "dod", "internet", "mgmt", "mib-2", "system"]
    system = el.find("snmp/iso/org/dod/internet/mgmt/mib-2/system")
    assert system is not None and system.get("oid") == "1.3.6.1.2.1.1"
    descr = system.find("sysDescr")
    assert (
        descr is not None and descr.get("oid") == "1.3.6.1.2.1.1.1" and descr.get("type") == "SnmpOctetString"
    )
    r = response(el)
    assert (r.getOIDText(f"{SYSTEM}.sysObjectID") or "").startswith(".1.3.6.1.4.1.8072.")
    assert (r.getOIDText(f"{SYSTEM}.sysDescr") or "").startswith("Linux")
    assert r.getOIDText(f"{SYSTEM}.sysLocation") == "midbox test rack"
    assert r.getOIDInt(f"{SYSTEM}.sysUpTime") >= 0
    assert r.getOIDText("1.3.6.1.2.1.1.1") is None  # numbers do not work, as in ServiceNow's reader
    # sysORTable rows are entries: a plain path through them finds nothing, getOIDTable reads them.
    assert r.getOIDObj(f"{SYSTEM}.sysORTable.sysOREntry.sysORDescr") is None
    rows = r.getOIDTable(f"{SYSTEM}.sysORTable", "sysOREntry")
    assert rows and all("sysORID" in row for row in rows.values())


@pytest.mark.parametrize(
    "spec",
    [
        f"walk {IF_TABLE}",
        f"table {IF_TABLE} ifEntry.ifIndex,ifEntry.ifDescr,ifEntry.ifType",
        "table ifTable ifIndex, ifDescr, ifType  // the entry prefix may be left off",
        "table 2.1.2.2 1,2,3",
    ],
)
def test_if_table_rows(snmpd: SnmpServer, tmp_path: Path, spec: str) -> None:
    el = run(job(snmpd, spec), ctx_for(snmpd, tmp_path))
    table = response(el).getOIDTable(IF_TABLE, "ifEntry")
    assert table is not None
    lo = [(instance, row) for instance, row in table.items() if row.get("ifDescr") == "lo"]
    assert len(lo) == 1
    instance, row = lo[0]
    assert row["ifIndex"] == instance and row["ifType"] == "24"  # softwareLoopback
    entry = el.find(f".//ifTable/ifEntry[@instance='.{instance}']")
    assert entry is not None and entry.find("ifIndex").get("type") == "SnmpInt32"  # type: ignore[union-attr]
    if spec.startswith("table"):
        assert set(row) == {"ifIndex", "ifDescr", "ifType"}
    else:
        assert {"ifMtu", "ifSpeed", "ifPhysAddress"} <= set(row)


def _if_rows(snmpd: SnmpServer, tmp_path: Path, columns: str) -> dict[str, dict[str, str]]:
    el = run(job(snmpd, f"table ifTable {columns}"), ctx_for(snmpd, tmp_path))
    return response(el).getOIDTable(IF_TABLE, "ifEntry") or {}


def test_table_filters(snmpd: SnmpServer, tmp_path: Path) -> None:
    every = _if_rows(snmpd, tmp_path, "ifIndex,ifDescr,ifType")
    assert len(every) >= 2, "the test host needs an interface besides lo"
    only_lo = _if_rows(snmpd, tmp_path, "ifIndex,ifDescr(=lo)")
    assert [r["ifDescr"] for r in only_lo.values()] == ["lo"]
    not_lo = _if_rows(snmpd, tmp_path, "ifIndex,ifDescr(!=lo)")
    assert len(not_lo) == len(every) - 1 and "lo" not in [r["ifDescr"] for r in not_lo.values()]
    contains = _if_rows(snmpd, tmp_path, "ifDescr(# o )")  # a value is trimmed; '#' means contains
    assert set(contains) == {i for i, r in every.items() if "o" in r["ifDescr"]}
    # Filters on two children: a row is kept when either matches.
    either = _if_rows(snmpd, tmp_path, f"ifDescr(=lo),ifIndex(={max(every, key=int)})")
    assert set(either) == {i for i, r in every.items() if r["ifDescr"] == "lo"} | {max(every, key=int)}
    assert _if_rows(snmpd, tmp_path, "ifIndex,ifDescr(=no-such-interface)") == {}


def test_prefix_and_comments(snmpd: SnmpServer, tmp_path: Path) -> None:
    ctx = ctx_for(snmpd, tmp_path)
    full = sorted_oids(varbinds(run(job(snmpd, "walk 1.3.6.1.2.1.1.9"), ctx)))
    for spec in (
        "walk 2.1.1.9 // 1.3.6.1 is put in front",
        "walk mgmt.mib-2.system.sysORTable",
        "// a comment line\nwalk .1.3.6.1.2.1.1.9\n# midbox's older comment form",
        "walk sysORTable",
    ):
        assert sorted_oids(varbinds(run(job(snmpd, spec), ctx))) == full, spec


def test_oids_without_a_name_go_under_the_nearest_named_ancestor(snmpd: SnmpServer, tmp_path: Path) -> None:
    # SNMP-USER-BASED-SM-MIB (1.3.6.1.6.3.15) is not in the compiled-in table.
    el = run(job(snmpd, "walk 1.3.6.1.6.3.15.1.1"), ctx_for(snmpd, tmp_path))
    parent = el.find("snmp/iso/org/dod/internet/snmpV2/snmpModules")
    assert parent is not None
    unnamed = parent.findall("unnamed")
    assert unnamed and all(u.get("oid", "").startswith("1.3.6.1.6.3.15.1.1.") for u in unnamed)
    assert all(u.get("type") == "SnmpCounter32" and (u.text or "").isdigit() for u in unnamed)


def test_unknown_name_is_a_clear_payload_error(snmpd: SnmpServer, tmp_path: Path) -> None:
    ctx = ctx_for(snmpd, tmp_path)
    with pytest.raises(PayloadError, match=r"'ciscoVtpMIB' is not in midbox's compiled MIB table"):
        run(job(snmpd, "walk ciscoVtpMIB"), ctx)
    with pytest.raises(PayloadError, match=r"'ifFrob' is not in midbox's compiled MIB table"):
        run(job(snmpd, "table ifTable ifIndex,ifFrob"), ctx)


def test_result_format_json_is_refused(snmpd: SnmpServer, tmp_path: Path) -> None:
    with pytest.raises(PayloadError, match=r"result_format=JSON is not supported by midbox.*set the probe"):
        run(job(snmpd, f"walk {SYSTEM}", result_format="JSON"), ctx_for(snmpd, tmp_path))
    el = run(job(snmpd, f"walk {SYSTEM}", result_format="XML"), ctx_for(snmpd, tmp_path))
    assert response(el).getOIDText(f"{SYSTEM}.sysName")


@pytest.mark.parametrize(("alias", "version"), [("v2", ""), ("v2", "2c"), ("v3", "3")])
def test_index_is_sent_as_community_at_vlan(
    snmpd: SnmpServer, tmp_path: Path, alias: str, version: str
) -> None:
    ctx = ctx_for(snmpd, tmp_path)
    ifs = f"walk {IF_TABLE}"
    if alias == "v3":  # v3 asks for the context vlan-7 instead, which this snmpd does not serve
        with pytest.raises(ProbeError):
            run(job(snmpd, ifs, alias, version, index="7", timeout="300", retries="0"), ctx)
        assert response(run(job(snmpd, ifs, alias, version), ctx)).getOIDTable(IF_TABLE, "ifEntry")
        return
    # snmpd knows COMMUNITY@7 as a second community that sees only the system group.
    indexed = run(job(snmpd, f"walk {SYSTEM}\n{ifs}", alias, version, index=str(snmpd.index)), ctx)
    r = response(indexed)
    assert r.getOIDText(f"{SYSTEM}.sysLocation") == "midbox test rack"
    assert r.getOIDTable(IF_TABLE, "ifEntry") is None  # the indexed community sees no interfaces
    plain = run(job(snmpd, ifs, alias, version, index="0"), ctx)  # the documented default: no index
    assert response(plain).getOIDTable(IF_TABLE, "ifEntry")
    with pytest.raises(ProbeError, match="no SNMP response"):  # COMMUNITY@8 is unknown to snmpd
        run(job(snmpd, ifs, alias, version, index="8", timeout="300", retries="0"), ctx)


def test_v1_needs_snmp_v1_in_the_rule(snmpd: SnmpServer, tmp_path: Path) -> None:
    import dataclasses

    c = MemCredentials(
        MemCredential("v1", "snmp-community", None, (snmpd.community.encode(),), {"version": "1"})
    )
    rule = loopback_rule(("snmp",), ((snmpd.port, snmpd.port),), ("v1",))
    ctx = make_ctx(Policy([rule]), c, tmp_path)
    with pytest.raises(TargetDeniedError, match="snmp_v1 = true"):
        run(job(snmpd, f"walk {SYSTEM}", "v1"), ctx)
    assert any(e == "target.denied" for e, _ in ctx.audit.events)  # type: ignore[attr-defined]
    with pytest.raises(TargetDeniedError, match="snmp_v1 = true"):  # the job's own version=1 as well
        run(job(snmpd, f"walk {SYSTEM}", "v1", "1"), ctx)
    ctx = make_ctx(Policy([dataclasses.replace(rule, snmp_v1=True)]), c, tmp_path)
    el = run(job(snmpd, f"walk {SYSTEM}\nwalk 1.3.6.1.6.3.200", "v1", use_getbulk="true"), ctx)
    r = response(el)
    assert r.getOIDText(f"{SYSTEM}.sysLocation") == "midbox test rack"
    assert (r.getOIDText(f"{SYSTEM}.sysObjectID") or "").startswith(".1.3.6.1.4.1.")
    # v1 has no endOfMibView: a walk past the end gets noSuchName, which ends it without an error.
    assert varbinds(el)[-1][0].startswith("1.3.6.1.2.1.1.")
    with pytest.raises(ProbeError, match="noSuchName"):  # v1 error semantics for a missing instance
        run(job(snmpd, "get 1.3.6.1.2.1.1.1.99", "v1"), ctx)


def _get_nexts(snmpd: SnmpServer) -> int:
    out = subprocess.run(
        [
            "snmpget",
            "-v2c",
            "-c",
            snmpd.community,
            "-Oqv",
            f"udp:127.0.0.1:{snmpd.port}",
            "1.3.6.1.2.1.11.16.0",
        ],
        capture_output=True,
        check=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "MIBS": ""},
    ).stdout
    return int(out.strip())


def test_use_getbulk_defaults_to_false(snmpd: SnmpServer, tmp_path: Path) -> None:
    # snmpInGetNexts counts the GETNEXT PDUs the agent received.
    ctx = ctx_for(snmpd, tmp_path)
    before = _get_nexts(snmpd)
    n = len(varbinds(run(job(snmpd, f"walk {SYSTEM}"), ctx)))
    after_default = _get_nexts(snmpd)
    run(job(snmpd, f"walk {SYSTEM}", use_getbulk="true"), ctx)
    after_bulk = _get_nexts(snmpd)
    assert after_default - before == n + 1  # one GETNEXT per varbind, one more to leave the subtree
    assert after_bulk == after_default


def test_result_byte_cap_truncates(snmpd: SnmpServer, tmp_path: Path) -> None:
    el = run(job(snmpd, "walk 1.3.6.1.2.1"), ctx_for(snmpd, tmp_path, limits=Limits(snmp_result_bytes=3000)))
    assert el.get("truncated") == "true"
    size = len(ET.tostring(el.find("snmp")))  # type: ignore[arg-type]
    assert 1500 < size <= 3000
    assert varbinds(el)


# ---- credentials as real probes carry them (none: the rule's aliases, in order) ------------------


def attempts(ctx: ProbeContext) -> list[tuple[str, str]]:
    return [
        (str(f["alias"]), str(f["outcome"]))
        for e, f in ctx.audit.events  # type: ignore[attr-defined]
        if e == "credential.attempt"
    ]


@pytest.mark.parametrize(
    ("aliases", "tried"),
    [
        (("sshpw", "v2bad", "v2"), [("v2bad", "rejected"), ("v2", "accepted")]),
        (("v3bad", "v3"), [("v3bad", "rejected"), ("v3", "accepted")]),
    ],
)
def test_a_job_without_credential_tries_the_rule_aliases(
    snmpd: SnmpServer, tmp_path: Path, aliases: tuple[str, ...], tried: list[tuple[str, str]]
) -> None:
    ctx = ctx_for(snmpd, tmp_path, aliases)
    j = make_job(
        "SNMP",
        "SNMP - Classify",
        "127.0.0.1",
        oid_spec_list=f"walk {SYSTEM}",
        port=str(snmpd.port),
        timeout="300",
        retries="0",
    )
    el = run(j, ctx)
    assert response(el).getOIDText(f"{SYSTEM}.sysLocation") == "midbox test rack"
    assert attempts(ctx) == tried  # sshpw is not an SNMP type: never tried


def test_every_rule_alias_refused_is_one_clear_error(snmpd: SnmpServer, tmp_path: Path) -> None:
    ctx = ctx_for(snmpd, tmp_path, ("v2bad", "v3bad"))
    j = make_job(
        "SNMP",
        "SNMP - Classify",
        "127.0.0.1",
        oid_spec_list=f"walk {SYSTEM}",
        port=str(snmpd.port),
        timeout="300",
        retries="0",
    )
    with pytest.raises(ProbeError, match=r"refused every credential tried \(v2bad, v3bad"):
        run(j, ctx)
    assert attempts(ctx) == [("v2bad", "rejected"), ("v3bad", "rejected")]


def test_the_devinstance_classify_output_and_sensor_round_trip(snmpd: SnmpServer, tmp_path: Path) -> None:
    # The instance stand-in's "SNMP - Classify" output, run as is; its sensor reads our answer.
    from devinstance.discovery.sensors import read_snmp_classify
    from devinstance.discovery.shapes import snmp_classify_output

    out = snmp_classify_output("127.0.0.1", port=snmpd.port)
    j = make_job(out.topic, out.name, out.source, **dict(out.parameters))
    el = run(j, ctx_for(snmpd, tmp_path, ("v3", "v2")))
    payload = f'<results probe_time="1" result_code="0">{ET.tostring(el, encoding="unicode")}</results>'
    found = read_snmp_classify(payload)
    assert found.sys_object_id.startswith(".1.3.6.1.4.1.8072.") and found.sys_descr.startswith("Linux")
