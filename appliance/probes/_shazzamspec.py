"""The port-probe spec of a Shazzam job (parameter ``port_probes``) and its tuning parameters, strictly.

Spec: ``<port_probes><port_probe name="ssh" scanner="BannerTCP" service="ssh" port="22" protocol="tcp"/>
...</port_probes>``; each field may be an attribute or a child element, ``port`` a list ("80,8080") or a
range ("1-3"). ServiceNow does not publish the spec's exact layout, so a field or element outside this set
is refused by name: a capture from a real instance would settle what else it may carry.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET  # nosec B405
from dataclasses import dataclass

from appliance.errors import PayloadError
from appliance.limits import (
    MAX_SHAZZAM_PORT_PROBES,
    MAX_SHAZZAM_PORTS_PER_PROBE,
    MAX_SHAZZAM_SNMP_TAPS,
    MAX_SHAZZAM_SPEC_BYTES,
    MAX_SHAZZAM_WAIT_MS,
)
from appliance.payload import parse_xml
from appliance.probes.base import Job

# Scanner → the transport it scans. DNS, NBT and SLP are known but not implemented (reported per pair).
SCANNERS = {
    "GenericTCP": "tcp",
    "BannerTCP": "tcp",
    "HTTP": "tcp",
    "HTTPS": "tcp",
    "SNMP": "udp",
    "DNS": "udp",
    "NBT": "udp",
    "SLP": "udp",
}
UNSUPPORTED_SCANNERS = frozenset({"DNS", "NBT", "SLP"})
_FIELDS = ("name", "scanner", "service", "port", "protocol")
_NAME = re.compile(r"[A-Za-z0-9_.+-]{1,64}\Z")
_UNKNOWN = (
    "a capture of a real instance's Shazzam output would settle whether it belongs; until then it is refused"
)


@dataclass(frozen=True)
class PortProbe:
    name: str
    scanner: str
    service: str
    ports: tuple[int, ...]
    protocol: str


@dataclass(frozen=True)
class Tuning:
    """The documented Shazzam probe parameters midbox acts on (defaults as ServiceNow documents them)."""

    report_inactive: bool = True
    report_dead: bool = False
    generic_connect_s: float = 1.0
    banner_wait_s: float = 1.5
    http_connect_s: float = 0.5
    https_connect_s: float = 0.5
    snmp_taps: int = 2
    snmp_tap_interval_s: float = 1.0


def parse_port_probes(text: str) -> tuple[PortProbe, ...]:
    """Parse the ``port_probes`` parameter; every failure is a PayloadError naming what to fix."""
    root = parse_xml(text, MAX_SHAZZAM_SPEC_BYTES)
    if root.tag != "port_probes":
        raise PayloadError(f"Shazzam 'port_probes' root must be <port_probes>, got <{root.tag[:40]}>")
    if root.attrib:
        raise PayloadError(
            f"Shazzam <port_probes> has unknown attribute {next(iter(root.attrib))[:40]!r}; {_UNKNOWN}"
        )
    probes: list[PortProbe] = []
    for index, element in enumerate(root, start=1):
        if element.tag != "port_probe":
            raise PayloadError(f"Shazzam 'port_probes' has unknown element <{element.tag[:40]}>; {_UNKNOWN}")
        if len(probes) >= MAX_SHAZZAM_PORT_PROBES:
            raise PayloadError(f"Shazzam 'port_probes' has more than {MAX_SHAZZAM_PORT_PROBES} port probes")
        probes.append(_port_probe(element, index))
    if not probes:
        raise PayloadError("Shazzam 'port_probes' names no <port_probe>")
    names = [p.name for p in probes]
    for name in names:
        if names.count(name) > 1:
            raise PayloadError(f"Shazzam port probe {name!r} is listed twice; names must be unique")
    return tuple(probes)


def _port_probe(element: ET.Element, index: int) -> PortProbe:
    where = f"Shazzam port probe {index}"
    fields: dict[str, str] = {}
    for key, value in element.attrib.items():
        if key not in _FIELDS:
            raise PayloadError(f"{where} has unknown attribute {key[:40]!r}; {_UNKNOWN}")
        fields[key] = value
    for child in element:
        if child.tag not in _FIELDS:
            raise PayloadError(f"{where} has unknown element <{child.tag[:40]}>; {_UNKNOWN}")
        if child.tag in fields:
            raise PayloadError(f"{where} gives {child.tag!r} twice (attribute and element, or two elements)")
        if len(child) or child.attrib:
            raise PayloadError(f"{where}: <{child.tag}> must hold plain text")
        fields[child.tag] = child.text or ""
    if (element.text or "").strip():
        raise PayloadError(f"{where}: <port_probe> holds stray text; fields are attributes or child elements")
    fields = {k: v.strip() for k, v in fields.items()}
    for key in _FIELDS:
        if not fields.get(key):
            raise PayloadError(f"{where} needs {key!r} (one of {', '.join(_FIELDS)})")
    name, scanner, service, protocol = (
        fields["name"],
        fields["scanner"],
        fields["service"],
        fields["protocol"],
    )
    for label, value in (("name", name), ("service", service)):
        if not _NAME.match(value):
            raise PayloadError(f"{where}: {label} {value[:40]!r} must be 1-64 letters, digits or _.+-")
    where = f"Shazzam port probe {name!r}"
    if scanner not in SCANNERS:
        raise PayloadError(f"{where}: unknown scanner {scanner[:40]!r}; known: {', '.join(SCANNERS)}")
    protocol = protocol.lower()
    if protocol != SCANNERS[scanner]:
        raise PayloadError(
            f"{where}: scanner {scanner} scans {SCANNERS[scanner]}, the spec says {protocol[:10]!r}"
        )
    return PortProbe(name, scanner, service, _ports(fields["port"], where), protocol)


def _ports(text: str, where: str) -> tuple[int, ...]:
    ports: dict[int, None] = {}  # ordered, de-duplicated
    items = [p.strip() for p in text.split(",")]
    if len(items) > MAX_SHAZZAM_PORTS_PER_PROBE:
        raise PayloadError(f"{where} lists more than {MAX_SHAZZAM_PORTS_PER_PROBE} port items")
    for item in items:
        low_text, _, high_text = item.partition("-")
        high_text = high_text or low_text
        if not (low_text.isascii() and low_text.isdigit() and high_text.isascii() and high_text.isdigit()):
            raise PayloadError(f"{where}: port {item[:20]!r} is not a number or a range like 1-3")
        low, high = int(low_text), int(high_text)
        if not 1 <= low <= high <= 65535:
            raise PayloadError(f"{where}: port {item[:20]!r} is outside 1..65535")
        if high - low + 1 + len(ports) > MAX_SHAZZAM_PORTS_PER_PROBE:
            raise PayloadError(f"{where} asks for more than {MAX_SHAZZAM_PORTS_PER_PROBE} ports")
        ports.update(dict.fromkeys(range(low, high + 1)))
    return tuple(ports)


def parse_tuning(job: Job) -> Tuning:
    """The tuning parameters; other ``<Scanner>_*`` parameters are ignored (the result echoes them)."""

    def seconds(name: str, default_ms: int) -> float:
        return job.int_param(name, default_ms, 1, MAX_SHAZZAM_WAIT_MS) / 1000

    return Tuning(
        report_inactive=_bool(job, "shazzam_report_inactive", True),
        report_dead=_bool(job, "shazzam_report_dead", False),
        generic_connect_s=seconds("GenericTCP_waitForConnectMS", 1000),
        banner_wait_s=seconds("BannerTCP_waitForConnectMS", 1500),
        http_connect_s=seconds("HTTP_waitForConnectMS", 500),
        https_connect_s=seconds("HTTPS_waitForConnectMS", 500),
        snmp_taps=job.int_param("SNMP_taps", 2, 1, MAX_SHAZZAM_SNMP_TAPS),
        snmp_tap_interval_s=seconds("SNMP_tapIntervalMS", 1000),
    )


def _bool(job: Job, name: str, default: bool) -> bool:
    raw = (job.param(name) or "").strip().lower()
    if not raw:
        return default
    if raw not in ("true", "false"):
        raise PayloadError(f"parameter {name!r} must be 'true' or 'false', got {raw[:20]!r}")
    return raw == "true"
