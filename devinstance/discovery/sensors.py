"""Sensors: read the appliance's answers as a ServiceNow instance's Discovery sensors do.

Layouts are the documented ones in the ECC contract (ecc-protocol.md) ("What a real instance sends"):

- Shazzam: one ``<result alive active ip_address>`` per address with ``<scanner service result protocol
  portprobe port name>`` children (``result`` open, refused, timed_out or io_error); classifiers read
  ``portprobe.service.field`` such as ``ssh.ssh.result`` or ``snmp.snmp.sysDescr``. Which classifier a
  port probe triggers and in which order follows ``r_PortProbes`` (SSH priority 2, SNMP 3).
- SNMP: ``<result><snmp>`` and a MIB-named tree, read by name path as ``SNMPResponse.getOIDText`` does
  (``c_SNMPResponseAPI``: names, never numbers).
- SSHCommand: ``<result command><stdout>..</stdout><stderr/></result>``; older inputs (KB0787098, a
  "UNIX - Classify" input) carry ``<output>`` instead, accepted too.

Every payload is untrusted: parsed size first with defusedxml through ``appliance.payload.parse_xml``.
SNMP answers are read through ``devinstance.snmpresponse.SNMPResponse`` (the getOIDText reader); the
Shazzam reader below is the one the appliance's own Shazzam tests use.
"""

from __future__ import annotations

# ElementTree for the type only; parsing goes through defusedxml (appliance.payload.parse_xml).
import xml.etree.ElementTree as ET  # nosec B405
from dataclasses import dataclass

from appliance.errors import PayloadError
from appliance.limits import MAX_PAYLOAD_BYTES
from appliance.payload import parse_xml
from devinstance.discovery.shapes import SNMP_CLASSIFY, SYSTEM_SUBTREE, UNIX_CLASSIFY
from devinstance.snmpresponse import SNMPResponse

SYS_OBJECT_ID = f"{SYSTEM_SUBTREE}.sysObjectID"
SYS_DESCR = f"{SYSTEM_SUBTREE}.sysDescr"
SYS_NAME = f"{SYSTEM_SUBTREE}.sysName"


class SensorError(Exception):
    """An answer a sensor cannot use; the message says what was wrong with it."""


@dataclass(frozen=True)
class ScannerResult:
    name: str  # the scanner: BannerTCP, SNMP, ...
    portprobe: str
    service: str
    port: str
    protocol: str
    result: str  # open, refused, timed_out, io_error
    fields: tuple[tuple[str, str], ...]  # child elements: banner_text, sysDescr, ...

    def field(self, name: str) -> str | None:
        return next((v for k, v in self.fields if k == name), None)


@dataclass(frozen=True)
class ShazzamHost:
    ip_address: str
    alive: bool
    active: bool
    scanners: tuple[ScannerResult, ...]

    def value(self, path: str) -> str | None:
        """``portprobe.service.field`` as classifiers name it, e.g. ``ssh.ssh.result``."""
        portprobe, _, rest = path.partition(".")
        service, _, field = rest.partition(".")
        for s in self.scanners:
            if s.portprobe == portprobe and s.service == service:
                if field == "result":
                    return s.result
                if field == "port":
                    return s.port
                found = s.field(field)
                if found is not None:
                    return found
        return None

    def open_scanner(self, portprobe: str) -> ScannerResult | None:
        return next((s for s in self.scanners if s.portprobe == portprobe and s.result == "open"), None)


@dataclass(frozen=True)
class Launch:
    """A classifier the Shazzam sensor decided to run against one address and port."""

    classifier: str  # UNIX - Classify, SNMP - Classify
    address: str
    port: int
    priority: int  # lower first, as the port probes' classification priority


def read_results(payload: str) -> ET.Element:
    """The ``<results>`` root of an input payload; an error result becomes a SensorError."""
    try:
        root = parse_xml(payload, MAX_PAYLOAD_BYTES)
    except PayloadError as e:
        raise SensorError(f"the answer is not usable XML: {e}") from e
    if root.tag != "results":
        raise SensorError(f"the answer's root is <{root.tag[:40]}>, not <results>")
    if root.get("result_code", "0") != "0" or root.get("error"):
        raise SensorError(
            f"the probe failed: {root.get('error') or 'result_code ' + root.get('result_code', '')}"
        )
    return root


def read_shazzam(payload: str) -> tuple[ShazzamHost, ...]:
    """One ShazzamHost per ``<result ip_address=..>`` of a Shazzam answer."""
    hosts: list[ShazzamHost] = []
    for result in read_results(payload).findall("result"):
        address = result.get("ip_address", "")
        if not address:
            raise SensorError("a Shazzam <result> has no ip_address")
        scanners = tuple(
            ScannerResult(
                name=s.get("name", ""),
                portprobe=s.get("portprobe", ""),
                service=s.get("service", ""),
                port=s.get("port", ""),
                protocol=s.get("protocol", ""),
                result=s.get("result", ""),
                fields=tuple((child.tag, (child.text or "").strip()) for child in s),
            )
            for s in result.findall("scanner")
        )
        hosts.append(
            ShazzamHost(
                ip_address=address,
                alive=result.get("alive") == "true",
                active=result.get("active") == "true",
                scanners=scanners,
            )
        )
    return tuple(hosts)


def classifiers_to_launch(host: ShazzamHost) -> list[Launch]:
    """What the Shazzam sensor launches for one host, in classification priority order.

    ssh open with an SSH banner: UNIX - Classify (priority 2); snmp open with a sysDescr: SNMP -
    Classify (priority 3). A real instance launches the next only when the one before it fails.
    """
    launches: list[Launch] = []
    ssh = host.open_scanner("ssh")
    if ssh is not None and (ssh.field("banner_text") or "SSH-").startswith("SSH-"):
        launches.append(Launch(UNIX_CLASSIFY, host.ip_address, _port(ssh), 2))
    snmp = host.open_scanner("snmp")
    if snmp is not None and snmp.field("sysDescr"):
        launches.append(Launch(SNMP_CLASSIFY, host.ip_address, _port(snmp), 3))
    return sorted(launches, key=lambda launch: launch.priority)


def _port(scanner: ScannerResult) -> int:
    # The scanner reports the port it found open; a list or range in the spec is one number here.
    try:
        return int(scanner.port)
    except ValueError as e:
        raise SensorError(f"scanner {scanner.portprobe!r} reports port {scanner.port[:20]!r}") from e


@dataclass(frozen=True)
class SnmpClassification:
    sys_object_id: str
    sys_descr: str
    sys_name: str


def read_snmp_classify(payload: str) -> SnmpClassification:
    """The SNMP - Classify sensor: sysObjectID (required to classify) and sysDescr by MIB name."""
    result = read_results(payload).find("result")
    snmp = result.find("snmp") if result is not None else None
    if snmp is None:
        raise SensorError("the SNMP answer has no <result><snmp> tree")
    response = SNMPResponse(snmp)
    object_id = (response.get_oid_text(SYS_OBJECT_ID) or "").strip()
    if not object_id:
        raise SensorError(f"the SNMP answer has no {SYS_OBJECT_ID}: the device cannot be classified")
    return SnmpClassification(
        sys_object_id=object_id,
        sys_descr=(response.get_oid_text(SYS_DESCR) or "").strip(),
        sys_name=(response.get_oid_text(SYS_NAME) or "").strip(),
    )


@dataclass(frozen=True)
class UnixClassification:
    name: str  # the OS name as the UNIX classifier matches it: Linux, SunOS, HP-UX, AIX, Darwin
    hostname: str
    output: str  # the raw uname -a line


def read_ssh_classify(payload: str) -> UnixClassification:
    """The UNIX - Classify sensor: the first line of stdout is ``uname -a``."""
    result = read_results(payload).find("result")
    if result is None:
        raise SensorError("the SSH answer has no <result>")
    status = result.findtext("exit_status")
    if status is not None and status.strip() not in ("", "0"):
        raise SensorError(f"the classify script exited with {status.strip()[:10]}")
    stdout = result.find("stdout")
    if stdout is None:
        stdout = result.find("output")
    lines = (stdout.text or "").strip().splitlines() if stdout is not None else []
    if not lines:
        raise SensorError("the SSH answer has no output: the script printed nothing")
    words = lines[0].split()
    if len(words) < 2:
        raise SensorError(f"the SSH answer does not look like uname -a: {lines[0][:80]!r}")
    return UnixClassification(name=words[0], hostname=words[1], output=lines[0])
