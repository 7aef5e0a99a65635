"""SNMP values as typed, XML-safe result text: the type names and text forms results carry."""

from __future__ import annotations

from appliance.mib.oids import format_oid
from appliance.payload import xml_text
from appliance.probes.snmp.ber import Value

# Wire type -> the type name results carry (ServiceNow's names, as its sensors read them).
RESULT_TYPES = {
    "Integer32": "SnmpInt32",
    "OctetString": "SnmpOctetString",
    "ObjectIdentifier": "SnmpObjectId",
    "IpAddress": "SnmpIPAddress",
    "Counter32": "SnmpCounter32",
    "Gauge32": "SnmpGauge32",
    "TimeTicks": "SnmpTimeTicks",
    "Counter64": "SnmpCounter64",
    "Opaque": "SnmpOpaque",
    "Null": "SnmpNull",
    "noSuchObject": "SnmpNoSuchObject",
    "noSuchInstance": "SnmpNoSuchInstance",
    "endOfMibView": "SnmpEndOfMibView",
}


def render(value: Value) -> tuple[str, str, bool]:
    """(result type, value text, hex?). Octet strings are text when printable UTF-8, else colon hex.

    Hex is lower-case pairs joined by ':' (``00:1a:2b``), the way SNMP4J prints a non-printable
    OctetString, so MAC addresses read as sensors expect.
    """
    smi, raw = value
    kind = RESULT_TYPES.get(smi, "SnmpOpaque")
    if raw is None:
        return kind, "", False
    if isinstance(raw, bytes):
        if smi == "IpAddress":
            return kind, ".".join(str(b) for b in raw), False
        if raw.isascii():
            ascii_text = raw.decode("ascii")
            if ascii_text.isprintable():  # printable ASCII is all valid XML: no scan needed
                return kind, ascii_text, False
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            return kind, raw.hex(":"), True
        if all(c.isprintable() or c in "\t\r\n" for c in text):
            return kind, xml_text(text), False
        return kind, raw.hex(":"), True
    if isinstance(raw, tuple):
        return kind, "." + format_oid(raw), False
    return kind, str(raw), False
