"""Group 3, SNMP against a real net-snmp snmpd: full-tree bulk walks v2c and v3 authPriv vs
``snmpbulkwalk`` with the same version and security; GETs/s at 1, 10 and 100 in flight; many
``snmpsim`` agents at once (one port each)."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from appliance.probes.base import Job
from appliance.probes.snmp.probe import SnmpProbe
from hardening.policy import Policy
from tests.bench.common import ENV, Row, Sizes, median, timed, tool
from tests.bench.snmpsim import agents
from tests.daemons import SnmpServer, run_snmpd
from tests.probes.conftest import (
    MemCredential,
    MemCredentials,
    ProbeContext,
    loopback_rule,
    make_ctx,
    make_job,
)
from tests.support.pysnmp_oracle import PysnmpOracle

GROUP = "3 snmp"
FLIGHTS = (1, 10, 100)
MANY = "many snmpsim agents at once, full walk each"
ROWS = (
    "full-tree bulk walk v2c",
    "full-tree bulk walk v3 authPriv (SHA-256/AES)",
    *(f"GETs/s, {n} in flight, {v}" for v in ("v2c", "v3") for n in FLIGHTS),
    MANY,
    # Where a walk's time goes: the same walks without the concurrent lanes, and through pysnmp.
    "full-tree bulk walk v2c, one lane",
    "full-tree bulk walk v2c through pysnmp (the tests' oracle)",
    "full-tree bulk walk v3 authPriv through pysnmp (the tests' oracle)",
)
VARIANTS: tuple[tuple[str, str, str, dict[str, Any]], ...] = (  # row, version, alias, the probe's settings
    (ROWS[-3], "2c", "v2", {"walk_lanes": 1}),
    (ROWS[-2], "2c", "v2", {"legacy": "2c"}),
    (ROWS[-1], "3", "v3", {"legacy": "3"}),
)


def _creds(s: SnmpServer) -> MemCredentials:
    return MemCredentials(
        MemCredential("v2", "snmp-community", None, (s.community.encode(),)),
        MemCredential("v3", "snmp-usm", s.v3_user, (s.v3_auth.encode(), s.v3_priv.encode()),
                      {"auth_protocol": "SHA-256", "priv_protocol": "AES"}),
    )  # fmt: skip


def _job(port: int, spec: str, version: str, alias: str) -> Job:
    return make_job("SNMP", "snmp", "127.0.0.1", oid_spec_list=spec, version=version, port=str(port),
                    credential=alias, timeout="3000", use_getbulk="true")  # fmt: skip


def _walk(job: Job, ctx: ProbeContext, settings: dict[str, Any] | None = None) -> float:
    async def go() -> None:
        kw = dict(settings or {})
        if "legacy" in kw:  # a fresh oracle per walk, as the probe is
            kw["legacy"] = PysnmpOracle({kw["legacy"]})
        probe = SnmpProbe(**kw)
        try:
            await probe.run(job, ctx)
        finally:
            await probe.aclose()

    return timed(lambda: asyncio.run(go()))


def _net_snmp(s: SnmpServer, directory: Path, v3: bool) -> Callable[[], float]:
    """snmpbulkwalk with its secrets in an snmp.conf (SNMPCONFPATH), never in argv."""
    conf = directory / ("v3" if v3 else "v2c")
    conf.mkdir(parents=True, exist_ok=True)
    lines = (
        ["defVersion 3", f"defSecurityName {s.v3_user}", "defSecurityLevel authPriv", "defAuthType SHA-256",
         f"defAuthPassphrase {s.v3_auth}", "defPrivType AES", f"defPrivPassphrase {s.v3_priv}"]
        if v3 else ["defVersion 2c", f"defCommunity {s.community}"]
    )  # fmt: skip
    (conf / "snmp.conf").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (conf / "snmp.conf").chmod(0o600)
    env = {**ENV, "SNMPCONFPATH": str(conf), "HOME": str(conf)}
    cmd = [str(tool("snmpbulkwalk")), "-On", "-Oq", f"udp:127.0.0.1:{s.port}", ".1.3.6.1"]
    return lambda: timed(lambda: subprocess.run(cmd, check=True, capture_output=True, env=env))


def _gets(ctx: ProbeContext, job: Job, in_flight: int, count: int) -> float:
    async def go() -> float:
        probe = SnmpProbe(per_agent=in_flight)  # the cap would otherwise hold the flight at 8
        gate = asyncio.Semaphore(in_flight)

        async def one() -> None:
            async with gate:
                await probe.run(job, ctx)

        try:
            await probe.run(job, ctx)  # the engine and (v3) the agent's engine discovery, once
            start = time.perf_counter()
            await asyncio.gather(*(one() for _ in range(count)))
            return count / (time.perf_counter() - start)
        finally:
            await probe.aclose()

    return asyncio.run(go())


def run(sizes: Sizes) -> list[Row]:
    rows: list[Row] = []
    with run_snmpd(sizes.work / "snmpd") as s:
        ctx = make_ctx(
            Policy([loopback_rule(("snmp",), ((s.port, s.port),), ("v2", "v3"))]), _creds(s), sizes.work
        )
        walker = tool("snmpbulkwalk")
        net_snmp: dict[str, float] = {}  # version: snmpbulkwalk's median, for the variants' ratios
        for name, version, alias in ((ROWS[0], "2c", "v2"), (ROWS[1], "3", "v3")):
            job = _job(s.port, "walk 1.3.6.1", version, alias)
            ours = median([_walk(job, ctx) for _ in range(sizes.runs)])
            if walker is None:
                rows.append(Row(GROUP, name, ours, "s", "snmpd", versus="n/a: install snmp", runs=sizes.runs))
                continue
            theirs_fn = _net_snmp(s, sizes.work, v3=version == "3")
            theirs = net_snmp[version] = median([theirs_fn() for _ in range(sizes.runs)])
            rows.append(Row(GROUP, name, ours, "s", "net-snmp snmpd, whole tree", ratio=ours / theirs,
                            versus=f"snmpbulkwalk -v{version}: {theirs:.3g} s", runs=sizes.runs))  # fmt: skip
        count = sizes.pick(50, 1000)
        for version, alias in (("2c", "v2"), ("3", "v3")):
            job = _job(s.port, "get 1.3.6.1.2.1.1.1.0", version, alias)
            for n in FLIGHTS:
                rate = median([_gets(ctx, job, n, count) for _ in range(sizes.runs)])
                label = "v2c" if version == "2c" else "v3"
                rows.append(Row(GROUP, f"GETs/s, {n} in flight, {label}", rate, "GET/s",
                                f"snmpd, {count} GET jobs, per-agent cap {n}", runs=sizes.runs))  # fmt: skip
        variants = list(_variants(s, ctx, sizes, net_snmp))
    try:
        rows.append(_many(sizes))
    except Exception as e:
        rows.append(Row(GROUP, MANY, na=f"n/a: failed: {e}"))
    return rows + variants


def _variants(s: SnmpServer, ctx: ProbeContext, sizes: Sizes, net_snmp: dict[str, float]) -> Iterator[Row]:
    for name, version, alias, settings in VARIANTS:
        took = median([_walk(_job(s.port, "walk 1.3.6.1", version, alias), ctx, settings)
                       for _ in range(sizes.runs)])  # fmt: skip
        theirs = net_snmp.get(version)
        yield Row(GROUP, name, took, "s", "net-snmp snmpd, whole tree",
                  ratio=took / theirs if theirs else None,
                  versus=f"snmpbulkwalk -v{version}: {theirs:.3g} s" if theirs else "n/a: install snmp",
                  runs=sizes.runs)  # fmt: skip


def _many(sizes: Sizes) -> Row:
    n = sizes.pick(3, 50)
    with agents(sizes.work / "snmpsim", n) as sim:
        if sim is None:
            return Row(GROUP, MANY, na="n/a: install snmpsim and pysmi (pip; the dev lock has them)")
        ports = sim.ports
        rule = loopback_rule(("snmp",), tuple((p, p) for p in ports), ("sim",))
        creds = MemCredentials(MemCredential("sim", "snmp-community", None, (sim.community.encode(),)))
        ctx = make_ctx(Policy([rule]), creds, sizes.work)

        def all_at_once() -> float:
            async def go() -> None:
                probe = SnmpProbe()
                try:
                    await asyncio.gather(
                        *(probe.run(_job(p, "walk 1.3.6.1", "2c", "sim"), ctx) for p in ports)
                    )
                finally:
                    await probe.aclose()

            return timed(lambda: asyncio.run(go()))

        took = median([all_at_once() for _ in range(sizes.runs)])
    return Row(GROUP, MANY, n / took, "agents/s", f"{n} snmpsim agents x {sim.oids} OIDs, v2c",
               versus=f"all {n} in {took:.3g} s", runs=sizes.runs)  # fmt: skip
