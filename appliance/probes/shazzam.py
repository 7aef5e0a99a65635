"""Shazzam as an instance builds it: port probes (``port_probes``) over ranges (``ranges``), one
``<result alive=".." active=".." ip_address="..">`` per address with a ``<scanner>`` per port probe and port.

Every (address, port probe, port) is checked against the policy first (TCP scanners as probe "tcp",
SNMP as probe "snmp"); denied pairs are never scanned and are left out of the result (audited as
``target.denied``). A job of which nothing is allowed is an error (TargetDeniedError).

Reading of ServiceNow's documentation (ShazzamResult, t_ConfigureTheShazzamProbe, the port-scanning
troubleshooting page): ``active`` = some port answered ``open``; ``alive`` = something answered at all
(``open`` or ``refused``). An active address is always reported; an alive but inactive one (only refusals)
when ``shazzam_report_inactive`` (default true); a dead one (nothing answered) only when
``shazzam_report_dead`` (default false).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET  # nosec B405
from dataclasses import dataclass

from appliance.errors import PayloadError, TargetDeniedError
from appliance.payload import RESULT_LIST
from appliance.probes._scanpool import ScanPool
from appliance.probes._shazzamranges import parse_ranges
from appliance.probes._shazzamscanners import Outcome, scan_tcp, unsupported
from appliance.probes._shazzamsnmp import SnmpScanner
from appliance.probes._shazzamspec import (
    UNSUPPORTED_SCANNERS,
    PortProbe,
    Tuning,
    parse_port_probes,
    parse_tuning,
)
from appliance.probes.base import Job, ProbeContext
from appliance.probes.snmp.opener import SessionOpener
from hardening.policy import IPAddress


@dataclass(frozen=True)
class _Pair:
    address: IPAddress
    probe: PortProbe
    port: int


async def run_shazzam(pool: ScanPool, opener: SessionOpener, job: Job, ctx: ProbeContext) -> ET.Element:
    # 1. Parse all of the job before touching the network.
    probes = parse_port_probes(job.param("port_probes") or "")
    ranges_text = job.param("ranges")
    if not ranges_text or not ranges_text.strip():
        raise PayloadError("Shazzam job with 'port_probes' needs 'ranges' (JSON or <ranges> XML)")
    ranges = parse_ranges(ranges_text)
    tuning = parse_tuning(job)
    scanned = [p for p in probes if p.scanner not in UNSUPPORTED_SCANNERS]
    if not scanned:
        names = ", ".join(sorted({p.scanner for p in probes}))
        raise PayloadError(
            f"Shazzam job uses only scanners midbox does not implement ({names}); "
            "add a TCP or SNMP port probe"
        )
    ports = sum(len(p.ports) for p in probes)
    upper = ranges.upper_bound * ports
    if upper > ctx.limits.scan_targets:
        raise PayloadError(
            f"Shazzam job asks for {upper} address/port pairs; the cap is {ctx.limits.scan_targets}"
        )

    # 2. The policy decides each pair; denied ones are never scanned and never reported.
    allowed: list[_Pair] = []
    denied: dict[tuple[str, int], tuple[int, str]] = {}
    for address in ranges.addresses():
        for probe in scanned:
            kind = "snmp" if probe.scanner == "SNMP" else "tcp"
            for port in probe.ports:
                decision = ctx.policy.check(probe=kind, address=address, port=port)
                if decision.allowed:
                    allowed.append(_Pair(address, probe, port))
                else:
                    count, reason = denied.get((probe.name, port), (0, decision.reason))
                    denied[(probe.name, port)] = (count + 1, reason)
    if denied:
        ctx.audit.record(
            "target.denied",
            {
                "probe": "shazzam",
                "target": ranges.describe()[:500],
                "port": ",".join(sorted({f"{name}:{port}" for name, port in denied}))[:200],
                "credential": None,
                "reason": next(iter(denied.values()))[1],
                "pairs": sum(c for c, _ in denied.values()),
            },
        )
    if not allowed:
        first = next(iter(denied.values()))[1] if denied else "nothing to scan"
        raise TargetDeniedError(f"no address/port of this scan is allowed: {first}")
    ctx.audit.record("probe.scan", {"probe": "shazzam", "pairs": len(allowed), "ports": ports})

    # 3. Scan, paced and capped with every other scan of this probe, until the probe deadline.
    snmp = SnmpScanner(ctx, job, opener)

    async def one(i: int) -> Outcome:
        pair = allowed[i]
        if pair.probe.scanner == "SNMP":
            return await snmp.scan(pair.address, pair.port, tuning)
        return await scan_tcp(pair.probe, pair.address, pair.port, tuning)

    outcomes = await pool.run([p.address for p in allowed], one, ctx.limits.probe_timeout_s)
    return _results(allowed, outcomes, [p for p in probes if p.scanner in UNSUPPORTED_SCANNERS], tuning)


def _results(
    pairs: list[_Pair], outcomes: list[Outcome | None], not_scanned: list[PortProbe], tuning: Tuning
) -> ET.Element:
    container = ET.Element(RESULT_LIST)
    if any(o is None for o in outcomes):
        container.set("truncated", "true")  # the probe deadline came first; unfinished pairs are left out
    per_address: dict[IPAddress, list[tuple[_Pair, Outcome]]] = {}
    for pair, outcome in zip(pairs, outcomes, strict=True):
        if outcome is not None:
            per_address.setdefault(pair.address, []).append((pair, outcome))
    for address, rows in per_address.items():
        active = any(o.result == "open" for _, o in rows)
        alive = active or any(o.result == "refused" for _, o in rows)
        if not active and not (tuning.report_inactive if alive else tuning.report_dead):
            continue
        result = ET.SubElement(
            container,
            "result",
            {"alive": _flag(alive), "active": _flag(active), "ip_address": str(address)},
        )
        for pair, outcome in rows:
            _scanner(result, pair.probe, pair.port, outcome)
        for probe in not_scanned:
            for port in probe.ports:
                _scanner(result, probe, port, unsupported(probe))
    return container


def _scanner(parent: ET.Element, probe: PortProbe, port: int, outcome: Outcome) -> None:
    element = ET.SubElement(
        parent,
        "scanner",
        {
            "service": probe.service,
            "result": outcome.result,
            "protocol": probe.protocol,
            "portprobe": probe.name,
            "port": str(port),
            "name": probe.scanner,
        },
    )
    for tag, text in outcome.fields:
        ET.SubElement(element, tag).text = text


def _flag(value: bool) -> str:
    return "true" if value else "false"
