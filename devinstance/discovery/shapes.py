"""Outputs shaped as a ServiceNow instance sends them for classic horizontal Discovery.

The development instance uses these to drive an appliance the way a real instance does: a Shazzam
scan, then the classifiers its sensor launches. Sources (ServiceNow's documentation repository,
``ServiceNow/ServiceNowDocs``, looked up with the search tool):

- ``t_ConfigureTheShazzamProbe``: the Shazzam tuning parameters and their defaults
  (``BannerTCP_waitForConnectMS`` 1500, ``GenericTCP_waitForConnectMS`` 1000, ``SNMP_taps`` 2,
  ``SNMP_tapIntervalMS`` 1000, ``shazzam_report_inactive`` true, ``shazzam_report_dead`` false) and the
  JSON-encoded ranges (``glide.discovery.shazzam_ranges_json``, true on new instances).
- ``c_ShazzamLaunchAPI``: the output carries "an XML port probe spec" per port probe.
- ``r_DiscoveryPortsAndProtocols`` and ``r_PortProbes``: the base port probes (``ssh`` on 22 triggers
  "UNIX - Classify", ``snmp`` on UDP 161 triggers "SNMP - Classify", ``http`` on 80 and 443, ``wmi`` a
  Generic TCP probe on epmap 135) and their classification priorities (WMI 1, SSH 2, SNMP 3, HTTP 4).
- ``r_SNMPProbeParameters``: ``oid_spec_list`` lines with MIB names, ``timeout`` 1500 ms, ``retries`` 2,
  ``credential_id``; no credential alias in a real output. KB0721214: "SNMP - Classify" also carries a
  ``cidata`` parameter (left out here: midbox ignores it).
- ``r_Parameters``, ``r_ShellScriptOptions``, ``c_SSHCommandPath``: SSHCommand's ``name`` is the shell
  command with ``${variable}`` and ``${File:name.sh}`` includes; ``port`` defaults to 22.
- ``classification-parameters``: the UNIX classifier reads the raw output of ``uname -a``.

What no public source fixes, decided here (marked [?] in the ECC contract (ecc-protocol.md)): the parameter
names of the port-probe spec and the ranges (``port_probes`` and ``ranges``, as the project's shared
decisions fix them), the JSON layout of the ranges (a JSON array of strings, each an address, a dash
range or a CIDR), and the body of the UNIX classify script (the real one is not published; this one
prints what the UNIX classifier reads).
"""

from __future__ import annotations

import json

# ElementTree only builds XML here; nothing untrusted is parsed in this module.
import xml.etree.ElementTree as ET  # nosec B405
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

SHAZZAM = "Shazzam"
SNMP_CLASSIFY = "SNMP - Classify"
UNIX_CLASSIFY = "UNIX - Classify"

# The MIB-named subtree the classifier reads; SNMPResponse.getOIDText takes names, not numbers.
SYSTEM_SUBTREE = "iso.org.dod.internet.mgmt.mib-2.system"
SNMP_CLASSIFY_SPEC = f"walk {SYSTEM_SUBTREE}"

UNIX_CLASSIFY_SCRIPT = "unix_classify.sh"
UNIX_CLASSIFY_COMMAND = f"${{File:{UNIX_CLASSIFY_SCRIPT}}}"
UNIX_CLASSIFY_BODY = """\
# UNIX - Classify (midbox development instance): the UNIX classifier reads the output of uname -a.
uname -a
"""


@dataclass(frozen=True)
class Output:
    """One ``ecc_queue`` output record before it is inserted: topic, name, source and parameters."""

    topic: str
    name: str
    source: str
    parameters: tuple[tuple[str, str], ...]

    def payload(self) -> str:
        """``<parameters><parameter name=".." value=".."/>...</parameters>``, every value escaped."""
        return parameters_xml(self.parameters)

    def param(self, name: str) -> str | None:
        return next((v for n, v in self.parameters if n == name), None)

    def record(self, agent: str, *, priority: str = "2", correlator: str = "") -> dict[str, str]:
        """The fields ``Store.enqueue`` takes; ``agent`` is a name or ``mid.server.NAME``."""
        return {
            "agent": agent if agent.startswith("mid.server.") else f"mid.server.{agent}",
            "topic": self.topic,
            "name": self.name,
            "source": self.source,
            "payload": self.payload(),
            "priority": priority,
            "agent_correlator": correlator,
        }


def parameters_xml(parameters: Sequence[tuple[str, str]]) -> str:
    root = ET.Element("parameters")
    for name, value in parameters:
        ET.SubElement(root, "parameter", name=name, value=value)
    return ET.tostring(root, encoding="unicode")


@dataclass(frozen=True)
class PortProbe:
    """One port probe of the spec: which scanner looks at which port for which service."""

    name: str
    scanner: str  # GenericTCP, BannerTCP, HTTP, HTTPS, SNMP, ...
    service: str
    port: str  # one port, a list "80,8080" or a range "1-3"
    protocol: str  # tcp or udp


def default_port_probes(
    *, ssh: int = 22, snmp: int = 161, http: int = 80, https: int = 443, generic: int = 135
) -> tuple[PortProbe, ...]:
    """The base system's probes this project scans for, on settable ports (loopback daemons in tests).

    ``wmi`` is the base system's Generic TCP probe (epmap, 135); the rest follow the port probe table.
    """
    return (
        PortProbe("ssh", "BannerTCP", "ssh", str(ssh), "tcp"),
        PortProbe("snmp", "SNMP", "snmp", str(snmp), "udp"),
        PortProbe("http", "HTTP", "http", str(http), "tcp"),
        PortProbe("https", "HTTPS", "https", str(https), "tcp"),
        PortProbe("wmi", "GenericTCP", "epmap", str(generic), "tcp"),
    )


def port_probes_xml(probes: Sequence[PortProbe]) -> str:
    """The spec: ``<port_probes>``, one ``<port_probe>`` (name, scanner, service, port, protocol) each."""
    root = ET.Element("port_probes")
    for p in probes:
        ET.SubElement(
            root,
            "port_probe",
            name=p.name,
            scanner=p.scanner,
            service=p.service,
            port=p.port,
            protocol=p.protocol,
        )
    return ET.tostring(root, encoding="unicode")


def ranges_json(ranges: Sequence[str]) -> str:
    """The ranges as a JSON string: each entry an address, a dash range ``a-b`` or a CIDR."""
    cleaned = [r.strip() for r in ranges if r.strip()]
    if not cleaned:
        raise ValueError("Shazzam needs at least one range: give an address, a dash range or a CIDR")
    return json.dumps(cleaned, separators=(",", ":"))


@dataclass(frozen=True)
class ShazzamTuning:
    """The documented tuning parameters with ServiceNow's defaults."""

    report_inactive: bool = True
    report_dead: bool = False
    banner_wait_ms: int = 1500
    generic_wait_ms: int = 1000
    snmp_taps: int = 2
    snmp_tap_interval_ms: int = 1000

    def parameters(self) -> tuple[tuple[str, str], ...]:
        return (
            ("shazzam_report_inactive", _bool(self.report_inactive)),
            ("shazzam_report_dead", _bool(self.report_dead)),
            ("BannerTCP_waitForConnectMS", str(self.banner_wait_ms)),
            ("GenericTCP_waitForConnectMS", str(self.generic_wait_ms)),
            ("SNMP_taps", str(self.snmp_taps)),
            ("SNMP_tapIntervalMS", str(self.snmp_tap_interval_ms)),
        )


def shazzam_output(
    ranges: Sequence[str],
    port_probes: Sequence[PortProbe] | None = None,
    tuning: ShazzamTuning | None = None,
) -> Output:
    """A Shazzam output as ``ShazzamLaunch`` sends it: the port-probe spec, JSON ranges, tuning."""
    probes = tuple(port_probes) if port_probes is not None else default_port_probes()
    if not probes:
        raise ValueError("Shazzam needs at least one port probe")
    encoded = ranges_json(ranges)
    params = (
        ("port_probes", port_probes_xml(probes)),
        ("ranges", encoded),
        *(tuning or ShazzamTuning()).parameters(),
    )
    return Output(topic=SHAZZAM, name=SHAZZAM, source=",".join(json.loads(encoded)), parameters=params)


def snmp_classify_output(
    address: str,
    *,
    port: int = 161,
    credential_id: str | None = None,
    credential_tag: str | None = None,
    timeout_ms: int = 1500,
    retries: int = 2,
    extra_specs: Sequence[str] = (),
) -> Output:
    """ "SNMP - Classify": a walk of the MIB-named system group; no credential alias, as a real output."""
    spec = "\n".join([SNMP_CLASSIFY_SPEC, *extra_specs])
    params: list[tuple[str, str]] = [
        ("oid_spec_list", spec),
        ("port", str(port)),
        ("timeout", str(timeout_ms)),
        ("retries", str(retries)),
    ]
    params += _credential_choice(credential_id, credential_tag)
    return Output(topic="SNMP", name=SNMP_CLASSIFY, source=address, parameters=tuple(params))


def ssh_classify_output(
    address: str,
    *,
    port: int = 22,
    credential_id: str | None = None,
    credential_tag: str | None = None,
    command_timeout_ms: int | None = None,
    extra: Mapping[str, str] | None = None,
) -> Output:
    """ "UNIX - Classify": ``name`` includes a script whose body travels as the parameter of that name."""
    params: list[tuple[str, str]] = [("port", str(port)), (UNIX_CLASSIFY_SCRIPT, UNIX_CLASSIFY_BODY)]
    if command_timeout_ms is not None:
        params.append(("command_timeout_ms", str(command_timeout_ms)))
    params += _credential_choice(credential_id, credential_tag)
    params += list((extra or {}).items())
    return Output(topic="SSHCommand", name=UNIX_CLASSIFY_COMMAND, source=address, parameters=tuple(params))


def _credential_choice(credential_id: str | None, credential_tag: str | None) -> list[tuple[str, str]]:
    # What the instance adds when it knows an affinity or a tag; never an alias, never a secret.
    out: list[tuple[str, str]] = []
    if credential_id:
        out.append(("credential_id", credential_id))
    if credential_tag:
        out.append(("credential_tag", credential_tag))
    return out


def _bool(value: bool) -> str:
    return "true" if value else "false"
