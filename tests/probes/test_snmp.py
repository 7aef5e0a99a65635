"""The SNMP probe against a real net-snmp snmpd on 127.0.0.1 (v2c and v3 authPriv)."""

from __future__ import annotations

import asyncio
import subprocess
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from appliance.errors import PayloadError, ProbeError, TargetDenied
from appliance.limits import Limits
from appliance.probes.base import ProbeContext
from appliance.probes.snmp import SnmpProbe
from hardening.policy import Policy
from tests.daemons import SnmpServer
from tests.probes.conftest import MemCredential, MemCredentials, loopback_rule, make_ctx, make_job

pytestmark = pytest.mark.daemons

SYS_DESCR = "1.3.6.1.2.1.1.1.0"
SYS_OBJECT_ID = "1.3.6.1.2.1.1.2.0"
SYS_UPTIME = "1.3.6.1.2.1.1.3.0"
SYS_LOCATION = "1.3.6.1.2.1.1.6.0"


PROBE_KW: dict[str, bool] = {}


@pytest.fixture(autouse=True, params=[True, False], ids=["fast-v2c", "pysnmp-v2c"])
def v2c_path(request: pytest.FixtureRequest) -> None:
    """Every test runs with v2c through the built-in codec and through pysnmp."""
    PROBE_KW["fast_v2c"] = request.param


def new_probe(**kw: int) -> SnmpProbe:
    return SnmpProbe(**kw, fast_v2c=PROBE_KW["fast_v2c"])


def creds(s: SnmpServer) -> MemCredentials:
    return MemCredentials(
        MemCredential("v2", "snmp-community", None, (s.community.encode(),)),
        MemCredential("v2bad", "snmp-community", None, (b"wrong-community",)),
        MemCredential(
            "v3",
            "snmp-usm",
            s.v3_user,
            (s.v3_auth.encode(), s.v3_priv.encode()),
            {"auth_protocol": "SHA-256", "priv_protocol": "AES"},
        ),
        MemCredential(
            "v3x",
            "snmp-usm",
            s.v3_user_aes256,
            (s.v3_auth.encode(), s.v3_priv.encode()),
            {"auth_protocol": "SHA-512", "priv_protocol": "AES-256"},
        ),
        MemCredential(
            "v3bad",
            "snmp-usm",
            s.v3_user,
            (b"wrong-auth-pass", s.v3_priv.encode()),
            {"auth_protocol": "SHA-256", "priv_protocol": "AES"},
        ),
        MemCredential("sshpw", "ssh-password", "root", (b"x",)),
    )


ALL = ("v2", "v2bad", "v3", "v3x", "v3bad", "sshpw")


def ctx_for(
    s: SnmpServer, tmp_path: Path, aliases: tuple[str, ...] = ALL, limits: Limits | None = None
) -> ProbeContext:
    return make_ctx(
        Policy([loopback_rule(("snmp",), ((s.port, s.port),), aliases)]), creds(s), tmp_path, limits
    )


def job(s: SnmpServer, spec: str, alias: str = "v2", version: str = "2c", host: str = "127.0.0.1", **kw: str):  # type: ignore[no-untyped-def]
    return make_job(
        "SNMP", "snmp", host, oid_spec_list=spec, version=version, port=str(s.port), credential=alias, **kw
    )


def run(job, ctx, probe: SnmpProbe | None = None) -> ET.Element:  # type: ignore[no-untyped-def]
    p = probe or new_probe()

    async def go() -> ET.Element:
        try:
            return await p.run(job, ctx)
        finally:
            await p.aclose()

    return asyncio.run(go())


def varbinds(el: ET.Element) -> list[tuple[str, str, str]]:
    return [(v.get("oid", ""), v.get("type", ""), v.get("value", "")) for v in el.iter("varbind")]


def netsnmp(s: SnmpServer, tool: str, *args: str) -> list[str]:
    out = subprocess.run(
        [tool, "-v2c", "-c", s.community, "-On", "-Oq", "-Ot", "-Ox", f"udp:127.0.0.1:{s.port}", *args],
        capture_output=True,
        check=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "MIBS": ""},
    ).stdout
    return [line.split(" ", 1)[0].lstrip(".") for line in out.splitlines() if line.strip()]


@pytest.mark.parametrize(("alias", "version"), [("v2", "2c"), ("v3", "3"), ("v3x", "3")])
def test_get_with_each_version(snmpd: SnmpServer, tmp_path: Path, alias: str, version: str) -> None:
    el = run(
        job(snmpd, f"get {SYS_DESCR} {SYS_OBJECT_ID} {SYS_UPTIME}\nget {SYS_LOCATION}", alias, version),
        ctx_for(snmpd, tmp_path),
    )
    vb = varbinds(el)
    assert [v[0] for v in vb] == [SYS_DESCR, SYS_OBJECT_ID, SYS_UPTIME, SYS_LOCATION]
    assert vb[0][1] == "OctetString" and vb[0][2].startswith("Linux")
    assert vb[1][1] == "ObjectIdentifier" and vb[1][2].startswith("1.3.6.1.4.1.")
    assert vb[2][1] == "TimeTicks" and int(vb[2][2]) >= 0
    assert vb[3] == (SYS_LOCATION, "OctetString", "midbox test rack")


def test_get_missing_instance_is_typed(snmpd: SnmpServer, tmp_path: Path) -> None:
    vb = varbinds(run(job(snmpd, "get 1.3.6.1.2.1.1.1.99"), ctx_for(snmpd, tmp_path)))
    assert vb == [("1.3.6.1.2.1.1.1.99", "noSuchInstance", "")]


def test_getnext(snmpd: SnmpServer, tmp_path: Path) -> None:
    vb = varbinds(run(job(snmpd, "getnext 1.3.6.1.2.1.1.1"), ctx_for(snmpd, tmp_path)))
    assert [v[0] for v in vb] == [SYS_DESCR]


@pytest.mark.parametrize("bulk", ["true", "false"])
def test_walk_matches_net_snmp(snmpd: SnmpServer, tmp_path: Path, bulk: str) -> None:
    el = run(job(snmpd, "walk 1.3.6.1.2.1.2", use_getbulk=bulk), ctx_for(snmpd, tmp_path))
    ours = [v[0] for v in varbinds(el)]
    theirs = netsnmp(snmpd, "snmpbulkwalk", "1.3.6.1.2.1.2")
    assert len(ours) > 10
    assert ours == theirs


def test_walk_over_v3_matches_v2c(snmpd: SnmpServer, tmp_path: Path) -> None:
    v2 = varbinds(run(job(snmpd, "walk 1.3.6.1.2.1.1.9"), ctx_for(snmpd, tmp_path)))
    v3 = varbinds(run(job(snmpd, "walk 1.3.6.1.2.1.1.9", "v3", "3"), ctx_for(snmpd, tmp_path)))
    assert v2 and [v[0] for v in v2] == [v[0] for v in v3]


def test_table_columns(snmpd: SnmpServer, tmp_path: Path) -> None:
    # ifTable: ifIndex (1) and ifDescr (2); loopback "lo" is always there.
    vb = varbinds(run(job(snmpd, "table 1.3.6.1.2.1.2.2 1 2"), ctx_for(snmpd, tmp_path)))
    indexes = [v for v in vb if v[0].startswith("1.3.6.1.2.1.2.2.1.1.")]
    descrs = [v for v in vb if v[0].startswith("1.3.6.1.2.1.2.2.1.2.")]
    assert indexes and len(indexes) == len(descrs)
    assert all(v[1] == "Integer32" for v in indexes)
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
    with pytest.raises(ProbeError, match="needs an snmp-community"):
        run(job(snmpd, f"get {SYS_DESCR}", "sshpw", "2c"), ctx_for(snmpd, tmp_path))


def test_denied_target_and_credential(snmpd: SnmpServer, tmp_path: Path) -> None:
    c = creds(snmpd)
    ctx = make_ctx(Policy([]), c, tmp_path)
    with pytest.raises(TargetDenied):
        run(job(snmpd, f"get {SYS_DESCR}"), ctx)
    ctx = make_ctx(Policy([loopback_rule(("snmp",), ((snmpd.port, snmpd.port),), ("v3",))]), c, tmp_path)
    with pytest.raises(TargetDenied, match="credential 'v2'"):
        run(job(snmpd, f"get {SYS_DESCR}"), ctx)
    assert c.lookups == []


@pytest.mark.parametrize(
    "spec",
    [
        "",
        "get",
        "get sysDescr.0",
        "walk 1.3 1.4",
        "frob 1.3.6",
        "get 1.3.6.1.-1",
        "table 1.3.6.1.2.1.2.2",
        "get 9.1",
        "get 1.3.6." + "1." * 200 + "1",
        "table 1.3.6.1.2.1.2.2 x",
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
