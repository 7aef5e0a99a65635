"""Benchmark of the policy decision per job (not part of the test run).

    python -m tests.bench.bench_policy [--rules 50] [--jobs 2000] [--runs 7] [--probes]

The decision is what the dispatcher and the probe add for policy: the job's ask (command expansion,
OID parsing, URL path) and ``Policy.check`` through a scoped policy, on a config of ``--rules`` rules
each with scopes (30 command templates, 8 OID subtrees, 4 paths), the matching rule last (worst
case). Then the rate limiter's acquire and release. Medians of ``--runs`` runs, in microseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import statistics
import time

from appliance.asks import AskCache, prepared
from appliance.probes.base import Job
from appliance.ratelimit import Limiter, RateSettings, RuleLimits
from hardening.policy import AllowRule, Policy, PortRange
from hardening.scopes import CommandScope, PathScope, Scopes

COMMANDS = (
    *tuple(f"cmd{i} -x {{a:word}} {{b:int}}" for i in range(28)),
    "uname -a",
    "ip -o addr show dev {i:iface}",
)
OIDS = tuple((1, 3, 6, 1, 2, 1, n) for n in (1, 2, 4, 25, 31, 47, 17, 4))


def policy(rules: int) -> Policy:
    scopes = Scopes(
        commands=CommandScope.parse(COMMANDS),
        oids=OIDS,
        methods=frozenset({"GET", "HEAD"}),
        paths=PathScope.parse(("/redfish/v1/**", "/api/now/table/cmdb_ci", "/health", "/status/**")),
    )
    out = [
        AllowRule(
            networks=(ipaddress.ip_network(f"10.{i}.0.0/16"),),
            hosts=(),
            probes=frozenset({"ssh", "snmp", "http"}),
            ports=(PortRange(22, 22), PortRange(161, 161), PortRange(443, 443)),
            credentials=("a",),
            scopes=scopes,
        )
        for i in range(1, rules)
    ]
    out.append(
        AllowRule(
            networks=(ipaddress.ip_network("192.0.2.0/24"),),
            hosts=(),
            probes=frozenset({"ssh", "snmp", "http"}),
            ports=(PortRange(1, 65535),),
            credentials=("a",),
            scopes=scopes,
        )
    )
    return Policy(out)


JOBS = {
    "ssh": Job("0" * 32, "SSHCommand", "ip -o addr show dev ${iface}", "192.0.2.7", "a",
               parameters=(("iface", "eth0"), ("port", "22"))),
    "snmp": Job("0" * 32, "SNMP", "snmp", "192.0.2.7", "a", parameters=(
        ("oid_spec_list", "walk system\nwalk interfaces\ntable ifXTable ifName,ifAlias\nget sysDescr.0"),)),
    "snmpget": Job("0" * 32, "SNMP", "snmp", "192.0.2.7", "a", parameters=(("oid_spec_list", "get sysDescr.0"),)),
    "http": Job("0" * 32, "RESTProbe", "http", "192.0.2.7", "a",
                parameters=(("url", "https://192.0.2.7/redfish/v1/Systems/1"),)),
}  # fmt: skip
KIND = {"ssh": ("ssh", 22), "snmp": ("snmp", 161), "snmpget": ("snmp", 161), "http": ("http", 443)}


def decide(p: Policy, job: Job, kind: str, port: int) -> bool:
    """All the dispatcher and probe do for policy, the parse of the payload included."""
    return (
        p.scoped(prepared(job)[1])
        .check(probe=kind, address=ipaddress.ip_address(job.source), port=port)
        .allowed
    )


def decide_cached(p: Policy, cache: AskCache, job: Job, kind: str, port: int) -> bool:
    """As the dispatcher decides a payload it has parsed before (discovery sends one to many targets)."""
    return (
        p.scoped(cache.prepared(job)[1])
        .check(probe=kind, address=ipaddress.ip_address(job.source), port=port)
        .allowed
    )


def parse_only(job: Job) -> object:
    """The parse the probe needs anyway (the dispatcher's parse is handed on to the probe)."""
    from appliance.probes.http import parse_request
    from appliance.probes.snmp.params import parse_params

    return (
        parse_params(job) if job.topic == "SNMP" else parse_request(job) if job.topic == "RESTProbe" else None
    )


def timed(fn: object, n: int, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        for _ in range(n):
            fn()  # type: ignore[operator]
        out.append((time.perf_counter() - t) / n * 1e6)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rules", type=int, default=50)
    ap.add_argument("--jobs", type=int, default=2000)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--probes", action="store_true", help="also time single probes on loopback (root)")
    args = ap.parse_args()
    p = policy(args.rules)
    for name, job in JOBS.items():
        kind, port = KIND[name]
        assert decide(p, job, kind, port)
        runs = timed(lambda: decide(p, job, kind, port), args.jobs, args.runs)  # noqa: B023
        parse = timed(lambda: parse_only(job), args.jobs, args.runs)  # noqa: B023
        cache = AskCache()
        cached = timed(lambda: decide_cached(p, cache, job, kind, port), args.jobs, args.runs)  # noqa: B023
        extra = statistics.median(runs) - statistics.median(parse)
        print(
            f"{name:7} decision ({args.rules} rules, matching rule last): median {statistics.median(runs):7.1f} us"
            f"  (runs: {', '.join(f'{r:.1f}' for r in runs)}); the probe's own parse {statistics.median(parse):.1f} us;"
            f" policy's own cost {extra:.1f} us; a payload seen before {statistics.median(cached):.1f} us"
        )

    async def leases(n: int) -> float:
        unlimited = RuleLimits(rate_per_s=1e9, burst=10**6, concurrency=1000)
        limiter = Limiter(RateSettings(target_rate_per_s=1e9, target_burst=10**6, rules={1: unlimited}))
        t = time.perf_counter()
        for _ in range(n):
            lease = limiter.lease()
            await lease.acquire("192.0.2.7", 22, 1)
            lease.release(True)
        return (time.perf_counter() - t) / n * 1e6

    runs = [asyncio.run(leases(args.jobs)) for _ in range(args.runs)]
    print(f"limiter acquire+release: median {statistics.median(runs):7.1f} us")
    if args.probes:
        probe_times(args.runs)


def probe_times(runs: int, jobs: int = 50) -> None:
    """One job at a time against loopback daemons, the fastest a real probe can be (root: sshd)."""
    import tempfile
    from pathlib import Path

    from appliance.probes.http import HttpProbe
    from appliance.probes.snmp.probe import SnmpProbe
    from appliance.probes.ssh import SshProbe
    from hardening.known_hosts import KnownHosts, parse_public_key_file
    from tests.daemons import run_snmpd, run_sshd
    from tests.helpers import http_target
    from tests.probes.conftest import MemCredential, MemCredentials, loopback_rule, make_ctx, make_job

    def median_ms(probe: object, job: Job, ctx: object) -> float:
        async def go() -> list[float]:
            out = []
            try:
                for _ in range(jobs):
                    t = time.perf_counter()
                    await probe.run(job, ctx)  # type: ignore[attr-defined]
                    out.append((time.perf_counter() - t) * 1000)
            finally:
                await probe.aclose()  # type: ignore[attr-defined]
            return out

        return statistics.median(statistics.median(asyncio.run(go())) for _ in range(runs))

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        with run_snmpd(root / "snmpd") as s:
            creds = MemCredentials(MemCredential("v2", "snmp-community", None, (s.community.encode(),)))
            ctx = make_ctx(Policy([loopback_rule(("snmp",), ((s.port, s.port),), ("v2",))]), creds, root)
            job = make_job("SNMP", "snmp", "127.0.0.1", port=str(s.port), oid_spec_list="get sysDescr.0")
            print(f"snmp GET sysDescr.0 job, loopback: median {median_ms(SnmpProbe(), job, ctx):.2f} ms")
            job = make_job(
                "SNMP", "snmp", "127.0.0.1", port=str(s.port), oid_spec_list=JOBS["snmp"].parameters[0][1]
            )
            print(
                f"snmp job of the decision above, loopback: median {median_ms(SnmpProbe(), job, ctx):.2f} ms"
            )
        with run_sshd(root / "sshd") as server:
            KnownHosts(root / "known_hosts").pin(
                "127.0.0.1",
                server.port,
                parse_public_key_file(server.host_key_pub.read_bytes(), source="pub"),
            )
            creds = MemCredentials(
                MemCredential("key", "ssh-key", server.user, (server.client_key.read_bytes(),))
            )
            ctx = make_ctx(
                Policy([loopback_rule(("ssh",), ((server.port, server.port),), ("key",))]), creds, root
            )
            job = make_job("SSHCommand", "true", "127.0.0.1", port=str(server.port), credential="key")
            print(
                f"ssh 'true' job (new connection), loopback: median {median_ms(SshProbe(), job, ctx):.2f} ms"
            )
        with http_target() as url:
            port = int(url.rsplit(":", 1)[1])
            ctx = make_ctx(Policy([loopback_rule(("http",), ((port, port),), ())]), MemCredentials(), root)
            job = make_job("RESTProbe", "http", "127.0.0.1", url=f"{url}/hello")
            print(f"http GET job, loopback: median {median_ms(HttpProbe(), job, ctx):.2f} ms")


if __name__ == "__main__":
    main()
