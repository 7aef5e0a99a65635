"""Group 6, TCP discovery: a connect sweep of 127.0.0.0/20 x 5 ports, midbox vs ``nmap -sT``."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import subprocess

from appliance.limits import Limits
from appliance.probes.tcpscan import TcpScanProbe
from hardening.policy import AllowRule, Policy, PortRange
from tests.bench.common import ENV, Row, Sizes, install, median, timed, tool
from tests.probes.conftest import MemCredentials, make_ctx, make_job

GROUP = "6 tcp"
ROWS = ("connect sweep, 5 ports",)
CONCURRENCY = 256  # the appliance's default scan_concurrency; nmap gets the same parallelism


def run(sizes: Sizes) -> list[Row]:
    net = "127.0.0.0/20" if not sizes.quick else "127.0.0.0/26"
    listener = socket.create_server(("127.0.0.1", 0), backlog=512)
    try:
        ports = [listener.getsockname()[1], 1, 7, 9, 13]  # one open, four closed (RST at once on loopback)
        spec = ",".join(map(str, ports))
        rule = AllowRule(
            networks=(ipaddress.ip_network(net),), hosts=(), probes=frozenset({"tcp"}),
            ports=(PortRange(1, 65535),), credentials=(),
        )  # fmt: skip
        ctx = make_ctx(Policy([rule]), MemCredentials(), sizes.work, Limits(scan_targets=65_536))
        job = make_job("Shazzam", "Shazzam", "", ranges=net, ports=spec, timeout_ms="1000")

        def ours() -> None:
            async def go() -> None:
                # rate at its ceiling (the default 1,000/s is a politeness cap, not the probe's speed)
                probe = TcpScanProbe(rate=100_000.0, concurrency=CONCURRENCY)
                await probe.run(job, ctx)

            asyncio.run(go())

        mine = [timed(ours) for _ in range(sizes.runs)]
        peer = f"{net} ({ipaddress.ip_network(net).num_addresses - 2} hosts) x {len(ports)} ports"
        nmap = tool("nmap")
        if nmap is None:
            return [Row(GROUP, ROWS[0], median(mine), "s", peer, versus=install("nmap"), runs=len(mine))]
        cmd = [nmap, "-sT", "-Pn", "-n", "-p", spec, "--max-retries", "0", "--min-parallelism", str(CONCURRENCY),
               "--max-parallelism", str(CONCURRENCY), "--min-hostgroup", "4096", "-oX", "-", net]  # fmt: skip
        theirs = [
            timed(lambda: subprocess.run(cmd, check=True, capture_output=True, env=ENV))
            for _ in range(sizes.runs)
        ]
        m = median(theirs)
        return [
            Row(GROUP, ROWS[0], median(mine), "s", peer, ratio=median(mine) / m,
                versus=f"nmap -sT, parallelism {CONCURRENCY}: {m:.3g} s", runs=len(mine))
        ]  # fmt: skip
    finally:
        listener.close()
