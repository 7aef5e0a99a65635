"""TCP discovery against real listening and closed sockets on the loopback interface."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from appliance.errors import PayloadError, TargetDeniedError
from appliance.limits import Limits
from appliance.probes.tcpscan import TcpScanProbe
from hardening.policy import Policy
from tests.probes.conftest import (
    MemCredentials,
    closed_port,
    listener,
    loopback_rule,
    make_ctx,
    make_job,
    unanswered_port,
)


def ctx(tmp_path: Path, ports: tuple[tuple[int, int], ...] = ((1, 65535),), limits: Limits | None = None):  # type: ignore[no-untyped-def]
    return make_ctx(Policy([loopback_rule(("tcp",), ports, ())]), MemCredentials(), tmp_path, limits)


def scan(job, c, probe: TcpScanProbe | None = None) -> ET.Element:  # type: ignore[no-untyped-def]
    async def go() -> ET.Element:
        p = probe or TcpScanProbe()
        try:
            return await p.run(job, c)
        finally:
            await p.aclose()

    return asyncio.run(go())


def shazzam(ranges: str, ports: str, **kw: str):  # type: ignore[no-untyped-def]
    return make_job("Shazzam", "Shazzam", "", ranges=ranges, ports=ports, **kw)


def states(el: ET.Element) -> dict[tuple[str, int], str]:
    return {(p.get("host", ""), int(p.get("port", "0"))): p.get("state", "") for p in el.iter("port")}


def test_open_and_closed(tmp_path: Path) -> None:
    closed = closed_port()
    with listener() as a, listener() as b:
        pa, pb = a.getsockname()[1], b.getsockname()[1]
        el = scan(shazzam("127.0.0.1", f"{pa},{pb},{closed}"), ctx(tmp_path))
    assert states(el) == {
        ("127.0.0.1", pa): "open",
        ("127.0.0.1", pb): "open",
        ("127.0.0.1", closed): "closed",
    }
    assert el.find("denied") is None and el.get("truncated") is None


def test_unanswered_syn_is_filtered(tmp_path: Path) -> None:
    # A listener with a full accept queue drops further SYNs: the connect gets no answer at all.
    with unanswered_port() as port:
        el = scan(shazzam("127.0.0.1", str(port), timeout_ms="300"), ctx(tmp_path))
    assert states(el) == {("127.0.0.1", port): "filtered"}


def test_denied_addresses_are_skipped_with_reason_and_never_touched(tmp_path: Path) -> None:
    with listener("127.0.0.1") as a, listener("127.0.0.2") as b:
        pa, pb = a.getsockname()[1], b.getsockname()[1]
        b.setblocking(False)
        el = scan(shazzam("127.0.0.1/32, 127.0.0.2", f"{pa},{pb}"), ctx(tmp_path))
        with pytest.raises(BlockingIOError):
            b.accept()  # nothing ever connected to the denied address
    assert set(states(el)) == {("127.0.0.1", pa), ("127.0.0.1", pb)}
    denied = [(d.get("range"), d.get("port"), d.get("count")) for d in el.iter("denied")]
    assert sorted(denied) == sorted([("127.0.0.2", str(pa), "1"), ("127.0.0.2", str(pb), "1")])
    assert all("no [[allow]] rule covers 127.0.0.2" in (d.get("reason") or "") for d in el.iter("denied"))


def test_denied_ports_are_skipped(tmp_path: Path) -> None:
    with listener() as a:
        pa = a.getsockname()[1]
        other = closed_port()
        el = scan(shazzam("127.0.0.1", f"{pa},{other}"), ctx(tmp_path, ports=((pa, pa),)))
    assert states(el) == {("127.0.0.1", pa): "open"}
    assert [d.get("port") for d in el.iter("denied")] == [str(other)]


def test_everything_denied_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(TargetDeniedError, match="no address/port of this scan is allowed"):
        scan(shazzam("10.0.0.0/30", "22"), ctx(tmp_path))
    # Loopback outside the named /32, and the metadata address, under a catch-all rule.
    import ipaddress

    from hardening.policy import AllowRule, PortRange

    catch_all = AllowRule(
        (ipaddress.ip_network("0.0.0.0/0"),), (), frozenset({"tcp"}), (PortRange(1, 65535),), frozenset()
    )
    c = make_ctx(Policy([catch_all]), MemCredentials(), tmp_path)
    with pytest.raises(TargetDeniedError, match="must name it"):
        scan(shazzam("169.254.169.254, 127.0.0.1", "80"), c)


@pytest.mark.parametrize(
    ("ranges", "ports"),
    [
        ("", "22"),
        ("127.0.0.1", ""),
        ("localhost", "22"),
        ("127.0.0.1/24", "22"),
        ("127.0.0.1", "0"),
        ("127.0.0.1", "70000"),
        ("127.0.0.1", "30-20"),
        ("127.0.0.1", "ssh"),
        ("127.0.0.1", "22;23"),
        (",", "1"),  # found by Hypothesis: a list of nothing is not a scan
        ("127.0.0.1", " , "),
    ],
)
def test_malformed_scans_are_payload_errors(tmp_path: Path, ranges: str, ports: str) -> None:
    with pytest.raises(PayloadError):
        scan(shazzam(ranges, ports), ctx(tmp_path))


def test_scan_size_is_capped_before_expansion(tmp_path: Path) -> None:
    with pytest.raises(PayloadError, match="cap is 100"):
        scan(shazzam("10.0.0.0/8", "1-1000"), ctx(tmp_path, limits=Limits(scan_targets=100)))


def test_port_ranges_and_ipv4_subnet_hosts(tmp_path: Path) -> None:
    # 127.0.0.0/30 has hosts .1 and .2 only; the rule names .1 alone, so .2 is denied and listed.
    el = scan(shazzam("127.0.0.0/30", "1-3"), ctx(tmp_path))
    assert set(states(el)) == {("127.0.0.1", p) for p in (1, 2, 3)}
    assert {d.get("port") for d in el.iter("denied")} == {"1", "2", "3"}


def test_deadline_returns_partial_results_marked_truncated(tmp_path: Path) -> None:
    with listener(backlog=0) as s:
        port = s.getsockname()[1]
        fillers = []
        for _ in range(3):
            c = socket.socket()
            c.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                c.connect(("127.0.0.1", port))
            fillers.append(c)
        time.sleep(0.2)
        start = time.monotonic()
        try:
            el = scan(
                shazzam("127.0.0.1", str(port), timeout_ms="20000"),
                ctx(tmp_path, limits=Limits(probe_timeout_s=0.5)),
            )
        finally:
            for c in fillers:
                c.close()
    assert time.monotonic() - start < 5
    assert el.get("truncated") == "true" and states(el) == {}


def test_rate_limit_spaces_connects(tmp_path: Path) -> None:
    closed = closed_port()
    start = time.monotonic()
    el = scan(shazzam("127.0.0.1", f"{closed}"), ctx(tmp_path), TcpScanProbe(rate=10))
    single = time.monotonic() - start
    start = time.monotonic()
    ports = ",".join(str(p) for p in range(40000, 40011))
    el = scan(shazzam("127.0.0.1", ports), ctx(tmp_path), TcpScanProbe(rate=10))
    elapsed = time.monotonic() - start
    assert len(states(el)) == 11
    assert elapsed >= 0.9  # 11 connects at 10/s need at least 1 s of spacing (first is immediate)
    assert single < elapsed


def test_probes_take_their_caps_from_limits() -> None:
    from appliance.probes.snmp.probe import SnmpProbe
    from appliance.probes.ssh import SshProbe

    limits = Limits(
        ssh_connections=5, ssh_per_target=2, snmp_per_agent=3, scan_rate_per_s=7.0, scan_per_host=4
    )
    assert SshProbe.from_limits(limits)._per_target == 2
    assert SshProbe.from_limits(limits)._max_connections == 5
    assert SnmpProbe.from_limits(limits)._per_agent == 3
    scan = TcpScanProbe.from_limits(limits)
    assert scan._per_host == 4 and scan._pacer._interval == pytest.approx(1 / 7)
