"""TCP discovery (topic Shazzam): a connect scan of the job's ranges and ports, inside the allowlist only.

This is midbox's own job shape (``ranges`` as comma-separated CIDRs, ``ports``). A job that carries
``port_probes`` is the shape an instance builds and goes to ``shazzam.run_shazzam``; both share the
probe's ``ScanPool`` (pacing, caps, deadline).

Denied (address, port) pairs are skipped, never probed, and reported as ``<denied>`` elements with the
policy's reason (grouped per range and port), so the instance sees what was left out and why. A job of
which nothing is allowed is an error (TargetDeniedError). Connects are paced by one rate limit shared by
every scan of this probe instance, bounded by a global and a per-address concurrency cap, and the
whole scan stops at the probe deadline with what it has (``truncated="true"``).
"""

from __future__ import annotations

import contextlib
import ipaddress
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from appliance.errors import PayloadError, TargetDeniedError
from appliance.limits import Limits
from appliance.probes._scanpool import Pacer, ScanPool, tcp_connect
from appliance.probes.base import Job, ProbeContext
from appliance.probes.shazzam import run_shazzam
from appliance.probes.snmp.opener import SessionOpener
from hardening.policy import IPAddress, IPNetwork

MAX_RANGES = 256
MAX_PORT_ITEMS = 256
MAX_TIMEOUT_MS = 30_000


@dataclass(frozen=True)
class ScanSpec:
    ranges: tuple[tuple[str, IPNetwork], ...]  # (as written, network)
    ports: tuple[int, ...]
    timeout_s: float


def parse_scan(job: Job, max_pairs: int) -> ScanSpec:
    ranges_text = (job.param("ranges") or "").strip()
    ports_text = (job.param("ports") or "").strip()
    if not ranges_text or not ports_text:
        raise PayloadError("Shazzam job needs 'ranges' (CIDRs or addresses) and 'ports'")
    if len(ranges_text) > 20_000 or len(ports_text) > 5_000:
        raise PayloadError("Shazzam 'ranges' or 'ports' parameter is too long")
    items = [r.strip() for r in ranges_text.split(",") if r.strip()]
    if not items:
        raise PayloadError("Shazzam 'ranges' names no address or CIDR")
    if len(items) > MAX_RANGES:
        raise PayloadError(f"Shazzam job has more than {MAX_RANGES} ranges")
    ranges: list[tuple[str, IPNetwork]] = []
    for item in items:
        try:
            ranges.append((item, ipaddress.ip_network(item, strict=True)))
        except ValueError as e:
            raise PayloadError(
                f"range {item[:60]!r} is not an address or CIDR (host bits must be zero)"
            ) from e
    ports: dict[int, None] = {}  # ordered and de-duplicated in one pass, even for "1-65535"
    port_items = [p.strip() for p in ports_text.split(",") if p.strip()]
    if not port_items:
        raise PayloadError("Shazzam 'ports' names no port")
    if len(port_items) > MAX_PORT_ITEMS:
        raise PayloadError(f"Shazzam job has more than {MAX_PORT_ITEMS} port items")
    for item in port_items:
        low_text, _, high_text = item.partition("-")
        high_text = high_text or low_text
        if not (low_text.isdigit() and high_text.isdigit() and low_text.isascii() and high_text.isascii()):
            raise PayloadError(f"port {item[:20]!r} is not a number or range")
        low, high = int(low_text), int(high_text)
        if not 1 <= low <= high <= 65535:
            raise PayloadError(f"port range {item[:20]!r} is outside 1..65535")
        ports.update(dict.fromkeys(range(low, high + 1)))
    pairs = sum(_host_count(net) for _, net in ranges) * len(ports)
    if pairs > max_pairs:
        raise PayloadError(f"Shazzam job asks for {pairs} address/port pairs; the cap is {max_pairs}")
    timeout_ms = job.int_param("timeout_ms", 1000, 10, MAX_TIMEOUT_MS)
    return ScanSpec(tuple(ranges), tuple(ports), timeout_ms / 1000)


def _host_count(net: IPNetwork) -> int:
    # Network and broadcast addresses of an IPv4 subnet are not hosts; /31, /32 and IPv6 are as given.
    if net.version == 4 and net.prefixlen < 31:
        return int(net.num_addresses) - 2
    return int(net.num_addresses)


def _hosts(net: IPNetwork) -> Iterator[IPAddress]:
    if net.version == 4 and net.prefixlen < 31:
        return iter(net.hosts())
    return iter(net)


class TcpScanProbe:
    """``rate`` connects/s and ``concurrency`` in flight for the probe; ``per_host`` for one address."""

    topics = ("Shazzam",)

    def rerun_safe(self, params: Mapping[str, str]) -> bool:
        return True  # connects and reads banners

    def __init__(
        self,
        *,
        rate: float = 1000.0,
        concurrency: int = 256,
        per_host: int = 16,
        snmp: SessionOpener | None = None,
    ) -> None:
        self._pool = ScanPool(rate=rate, concurrency=concurrency, per_host=per_host)
        # Shazzam's SNMP scanner opens sessions like the SNMP probe; the app hands it that probe's opener.
        self._owns_opener = snmp is None
        self._opener = snmp or SessionOpener()

    @property
    def _pacer(self) -> Pacer:
        return self._pool.pacer

    @property
    def _per_host(self) -> int:
        return self._pool.per_host

    @classmethod
    def from_limits(cls, limits: Limits, snmp: SessionOpener | None = None) -> TcpScanProbe:
        """The probe with the concurrency caps of ``limits`` (the dispatcher's constructor)."""
        return cls(
            rate=limits.scan_rate_per_s,
            concurrency=limits.scan_concurrency,
            per_host=limits.scan_per_host,
            snmp=snmp,
        )

    @property
    def kind(self) -> str:
        return "tcp"

    async def run(self, job: Job, ctx: ProbeContext) -> ET.Element:
        if job.param("port_probes") is not None:
            return await run_shazzam(self._pool, self._opener, job, ctx)  # the shape an instance builds
        spec = parse_scan(job, ctx.limits.scan_targets)
        allowed: list[tuple[IPAddress, int]] = []
        denied: dict[tuple[str, int], tuple[int, str]] = {}
        for text, net in spec.ranges:
            for address in _hosts(net):
                for port in spec.ports:
                    decision = ctx.policy.check(probe="tcp", address=address, port=port)
                    if decision.allowed:
                        allowed.append((address, port))
                    else:
                        count, reason = denied.get((text, port), (0, decision.reason))
                        denied[(text, port)] = (count + 1, reason)
        if denied:
            ctx.audit.record(
                "target.denied",
                {
                    "probe": "tcp",
                    "target": ",".join(t for t, _ in spec.ranges)[:500],
                    "port": ",".join(str(p) for p in spec.ports)[:200],
                    "credential": None,
                    "reason": next(iter(denied.values()))[1],
                    "pairs": sum(c for c, _ in denied.values()),
                },
            )
        if not allowed:
            first = next(iter(denied.values()))[1] if denied else "nothing to scan"
            raise TargetDeniedError(f"no address/port of this scan is allowed for tcp: {first}")
        ctx.audit.record("probe.scan", {"probe": "tcp", "pairs": len(allowed), "ports": len(spec.ports)})
        states = await self._scan(allowed, spec.timeout_s, ctx.limits.probe_timeout_s)
        result = ET.Element("result")
        if any(s is None for s in states):
            result.set("truncated", "true")  # the probe deadline came first; unprobed pairs are left out
        for (address, port), state in zip(allowed, states, strict=True):
            if state is not None:
                ET.SubElement(result, "port", {"host": str(address), "port": str(port), "state": state})
        for (text, port), (count, reason) in denied.items():
            ET.SubElement(
                result, "denied", {"range": text, "port": str(port), "count": str(count), "reason": reason}
            )
        return result

    async def aclose(self) -> None:
        """Every socket is closed by the connect that opened it; an opener of its own is released."""
        if self._owns_opener:
            await self._opener.aclose()

    async def _scan(
        self, pairs: list[tuple[IPAddress, int]], timeout_s: float, deadline_s: float
    ) -> list[str | None]:
        async def one(i: int) -> str:
            return await probe_port(*pairs[i], timeout_s)

        return await self._pool.run([a for a, _ in pairs], one, deadline_s)


_LEGACY_STATES = {"open": "open", "refused": "closed", "timed_out": "filtered", "io_error": "filtered"}


async def probe_port(address: IPAddress, port: int, timeout_s: float) -> str:
    """``open`` (handshake completed), ``closed`` (refused) or ``filtered`` (no answer, unreachable)."""
    outcome = await tcp_connect(address, port, timeout_s)
    if outcome.sock is not None:
        with contextlib.suppress(OSError):
            outcome.sock.close()
    return _LEGACY_STATES[outcome.state]
