"""Probe benchmarks against real loopback daemons (not part of the test run).

Run as root from the repository root:  python -m tests.bench.bench_probes [--runs N]
Prints medians of N runs. Figures are measured and reported, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from appliance.limits import Limits
from appliance.probes.snmp.probe import SnmpProbe
from appliance.probes.ssh import SshProbe
from appliance.probes.tcpscan import TcpScanProbe
from hardening.known_hosts import KnownHosts, parse_public_key_file
from hardening.policy import Policy
from tests.daemons import SnmpServer, SshServer, run_snmpd, run_sshd
from tests.probes.conftest import MemCredential, MemCredentials, loopback_rule, make_ctx, make_job

ENV = {"PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "MIBS": ""}


def median_of(runs: int, fn: Callable[[], float]) -> tuple[float, list[float]]:
    samples = [fn() for _ in range(runs)]
    return statistics.median(samples), samples


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench_snmp(s: SnmpServer, state: Path, runs: int) -> None:
    creds = MemCredentials(
        MemCredential("v2", "snmp-community", None, (s.community.encode(),)),
        MemCredential(
            "v3",
            "snmp-usm",
            s.v3_user,
            (s.v3_auth.encode(), s.v3_priv.encode()),
            {"auth_protocol": "SHA-256", "priv_protocol": "AES"},
        ),
    )
    ctx = make_ctx(Policy([loopback_rule(("snmp",), ((s.port, s.port),), ("v2", "v3"))]), creds, state)

    def walk_job(alias: str = "v2", version: str = "2c"):  # type: ignore[no-untyped-def]
        return make_job(
            "SNMP",
            "snmp",
            "127.0.0.1",
            oid_spec_list="walk 1.3.6.1",
            version=version,
            port=str(s.port),
            credential=alias,
            timeout="3000",
            use_getbulk="true",  # ServiceNow's default is GETNEXT; the comparison is with snmpbulkwalk
        )

    counts: list[int] = []

    def walk(
        fast: bool = True, alias: str = "v2", version: str = "2c", lanes: int = 4
    ) -> Callable[[], float]:
        def run() -> float:
            async def go() -> None:
                probe = SnmpProbe(fast_v2c=fast, fast_v3=fast, walk_lanes=lanes)
                try:
                    el = await probe.run(walk_job(alias, version), ctx)
                    counts.append(sum(1 for leaf in el.iter() if "type" in leaf.attrib))
                finally:
                    await probe.aclose()

            return timed(lambda: asyncio.run(go()))

        return run

    v2c = ("-v2c", "-c", s.community)
    v3 = (
        "-v3",
        "-l",
        "authPriv",
        "-u",
        s.v3_user,
        "-a",
        "SHA-256",
        "-A",
        s.v3_auth,
        "-x",
        "AES",
        "-X",
        s.v3_priv,
    )

    def theirs(reps: str, security: tuple[str, ...] = v2c) -> Callable[[], float]:
        def run() -> float:
            args = [
                "snmpbulkwalk",
                *security,
                "-On",
                "-Oq",
                *reps.split(),
                f"udp:127.0.0.1:{s.port}",
                ".1.3.6.1",
            ]
            return timed(lambda: subprocess.run(args, check=True, capture_output=True, env=ENV))

        return run

    # Interleaved, so a load change on the machine hits both sides of each ratio alike.
    samples: dict[str, list[float]] = {}
    sides = {
        "v2c": walk(),
        "v2c-1lane": walk(lanes=1),
        "ns-v2c": theirs("-Cr50"),
        "ns-v2c-default": theirs(""),
        "v3": walk(alias="v3", version="3"),
        "v3-1lane": walk(alias="v3", version="3", lanes=1),
        "ns-v3": theirs("-Cr50", v3),
    }
    for _ in range(runs):
        for name, fn in sides.items():
            samples.setdefault(name, []).append(fn())
    med = {name: statistics.median(v) for name, v in samples.items()}
    print(
        f"snmp full-tree bulk walk v2c ({counts[-1]} varbinds, 50 per GETBULK): midbox {med['v2c']:.3f} s "
        f"(runs {fmt(samples['v2c'])}), one lane {med['v2c-1lane']:.3f} s; snmpbulkwalk -Cr50 "
        f"{med['ns-v2c']:.3f} s, default {med['ns-v2c-default']:.3f} s; ratio midbox/net-snmp "
        f"{med['v2c'] / med['ns-v2c']:.2f}x (one lane {med['v2c-1lane'] / med['ns-v2c']:.2f}x)"
    )
    print(
        f"snmp full-tree bulk walk v3 SHA-256/AES: midbox {med['v3']:.3f} s (runs {fmt(samples['v3'])}), "
        f"one lane {med['v3-1lane']:.3f} s; snmpbulkwalk -v3 -Cr50 {med['ns-v3']:.3f} s; ratio "
        f"{med['v3'] / med['ns-v3']:.2f}x (one lane {med['v3-1lane'] / med['ns-v3']:.2f}x)"
    )
    m_py, raw = median_of(runs, walk(fast=False))
    print(
        f"snmp full-tree walk v2c and v3 through pysnmp (fast_v2c/fast_v3=False): v2c {m_py:.3f} s (runs {fmt(raw)})"
    )
    m_v3, raw = median_of(runs, walk(fast=False, alias="v3", version="3"))
    print(f"  v3 {m_v3:.3f} s (runs {fmt(raw)}), {m_v3 / med['ns-v3']:.2f}x snmpbulkwalk -v3")

    for per_agent in (8, 100):

        def gets(per_agent: int = per_agent) -> float:
            async def go() -> float:
                probe = SnmpProbe(per_agent=per_agent)
                gate = asyncio.Semaphore(100)
                job = make_job(
                    "SNMP",
                    "snmp",
                    "127.0.0.1",
                    oid_spec_list="get 1.3.6.1.2.1.1.1.0",
                    version="2c",
                    port=str(s.port),
                    credential="v2",
                )

                async def one() -> None:
                    async with gate:
                        await probe.run(job, ctx)

                await probe.run(job, ctx)  # warm the engine
                start = time.perf_counter()
                await asyncio.gather(*(one() for _ in range(1000)))
                elapsed = time.perf_counter() - start
                await probe.aclose()
                return 1000 / elapsed

            return asyncio.run(go())

        m, raw = median_of(runs, gets)
        print(
            f"snmp v2c GET jobs/s, 100 jobs in flight, per-agent cap {per_agent}: "
            f"{m:.0f} (runs {fmt(raw, 0)})"
        )


def bench_ssh(s: SshServer, state: Path, runs: int) -> None:
    KnownHosts(state / "known_hosts").pin(
        "127.0.0.1", s.port, parse_public_key_file(s.host_key_pub.read_bytes(), source="pub")
    )
    creds = MemCredentials(MemCredential("key", "ssh-key", s.user, (s.client_key.read_bytes(),)))
    ctx = make_ctx(Policy([loopback_rule(("ssh",), ((s.port, s.port),), ("key",))]), creds, state, Limits())
    job = make_job("SSHCommand", "true", "127.0.0.1", port=str(s.port), credential="key")

    def one_conn() -> float:
        async def go() -> None:
            probe = SshProbe()
            try:
                await probe.run_commands(job, ctx, ["true"] * 50)
            finally:
                await probe.aclose()

        return timed(lambda: asyncio.run(go()))

    def new_conns(per_target: int) -> Callable[[], float]:
        def run() -> float:
            async def go() -> None:
                probe = SshProbe(max_connections=50, per_target=per_target)
                try:
                    await asyncio.gather(*(probe.run(job, ctx) for _ in range(50)))
                finally:
                    await probe.aclose()

            return timed(lambda: asyncio.run(go()))

        return run

    kh = state / "openssh_known_hosts"
    kh.write_text(
        f"[127.0.0.1]:{s.port} {s.host_key_pub.read_text().split()[0]} "
        f"{s.host_key_pub.read_text().split()[1]}\n"
    )
    base = [
        "ssh",
        "-F",
        "/dev/null",
        "-p",
        str(s.port),
        "-i",
        str(s.client_key),
        "-o",
        "BatchMode=yes",
        "-o",
        f"UserKnownHostsFile={kh}",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "IdentitiesOnly=yes",
        f"{s.user}@127.0.0.1",
    ]

    def openssh_parallel() -> float:
        def go() -> None:
            procs = [
                subprocess.Popen(
                    [*base, "true"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV
                )
                for _ in range(50)
            ]
            codes = [p.wait() for p in procs]
            if any(codes):
                raise RuntimeError(f"openssh failures: {codes}")

        return timed(go)

    def openssh_mux() -> float:
        ctl = state / "ctl"
        master = subprocess.Popen(
            [*base[:-1], "-M", "-N", "-o", f"ControlPath={ctl}", base[-1]],
            env=ENV,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            while not ctl.exists():
                time.sleep(0.02)
            return timed(
                lambda: [
                    subprocess.run(
                        [*base[:-1], "-o", f"ControlPath={ctl}", base[-1], "true"], check=True, env=ENV
                    )
                    for _ in range(50)
                ]
            )
        finally:
            master.terminate()
            master.wait()
            with contextlib.suppress(FileNotFoundError):
                ctl.unlink()

    for label, fn in [
        ("midbox 50 commands on one connection", one_conn),
        ("midbox 50 new connections, per-target cap 4", new_conns(4)),
        ("midbox 50 new connections, per-target cap 16", new_conns(16)),
        ("OpenSSH ssh x50 in parallel", openssh_parallel),
        ("OpenSSH 50 commands over one ControlMaster", openssh_mux),
    ]:
        m, raw = median_of(runs, fn)
        print(f"ssh {label}: {m:.3f} s (runs {fmt(raw)})")


def bench_tcp(state: Path, runs: int) -> None:
    ctx = make_ctx(
        Policy([loopback_rule(("tcp",), ((1, 65535),), ())]),
        MemCredentials(),
        state,
        Limits(scan_targets=65536),
    )
    job = make_job("Shazzam", "Shazzam", "", ranges="127.0.0.1", ports="20000-29999", timeout_ms="1000")

    def scan(rate: float) -> Callable[[], float]:
        def run() -> float:
            async def go() -> float:
                probe = TcpScanProbe(rate=rate, concurrency=256)
                start = time.perf_counter()
                el = await probe.run(job, ctx)
                elapsed = time.perf_counter() - start
                assert len(el) == 10_000
                return 10_000 / elapsed

            return asyncio.run(go())

        return run

    for rate in (1000.0, 100_000.0):
        m, raw = median_of(runs, scan(rate))
        print(
            f"tcp discovery connects/s (10000 loopback ports, rate cap {rate:.0f}/s): "
            f"{m:.0f} (runs {fmt(raw, 0)})"
        )


def bench_http(state: Path, runs: int, in_flight: int = 50, requests: int = 2000) -> None:
    """The HTTP probe at 50 in flight against a target in its own process, beside a bare httpx client
    on the same target in the same run (the target's own limit shows in both)."""
    import sys

    import httpx

    from appliance.probes.http import HttpProbe

    target = subprocess.Popen(
        [sys.executable, "-m", "tests.support.target_main"], stdout=subprocess.PIPE, text=True
    )
    try:
        url = target.stdout.readline().strip() + "/hello"  # type: ignore[union-attr]
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        ctx = make_ctx(Policy([loopback_rule(("http",), ((port, port),), ())]), MemCredentials(), state)
        job = make_job("RESTProbe", "http", "127.0.0.1", url=url)

        async def flood(one: Callable[[], object]) -> float:
            sem = asyncio.Semaphore(in_flight)

            async def task() -> None:
                async with sem:
                    await one()  # type: ignore[misc]

            start = time.perf_counter()
            await asyncio.gather(*(task() for _ in range(requests)))
            return requests / (time.perf_counter() - start)

        def probe_run() -> float:
            async def go() -> float:
                probe = HttpProbe()
                try:
                    return await flood(lambda: probe.run(job, ctx))
                finally:
                    await probe.aclose()

            return asyncio.run(go())

        def bare_run() -> float:
            async def go() -> float:
                async with httpx.AsyncClient(trust_env=False) as client:
                    return await flood(lambda: client.get(url))

            return asyncio.run(go())

        for name, fn in (("HTTP probe", probe_run), ("bare httpx client", bare_run)):
            m, raw = median_of(runs, fn)
            print(
                f"{name}: requests/s at {in_flight} in flight ({requests} GETs): {m:.0f} (runs {fmt(raw, 0)})"
            )
    finally:
        target.terminate()
        target.wait(10)


def fmt(values: list[float], digits: int = 3) -> str:
    return ", ".join(f"{v:.{digits}f}" for v in values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--only", choices=["snmp", "ssh", "tcp", "http"])
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root (sshd fixture)")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        if args.only in (None, "snmp"):
            with run_snmpd(root / "snmpd") as s:
                bench_snmp(s, root, args.runs)
        if args.only in (None, "ssh"):
            with run_sshd(root / "sshd") as server:
                bench_ssh(server, root, args.runs)
        if args.only in (None, "tcp"):
            bench_tcp(root, args.runs)
        if args.only in (None, "http"):
            bench_http(root, args.runs)


if __name__ == "__main__":
    main()
