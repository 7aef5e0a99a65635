"""SNMP values as typed, XML-safe result attributes: ``<varbind oid type value [encoding]/>``."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

from appliance.probes._snmpber import Value
from appliance.probes._snmpspec import Oid, format_oid
from appliance.probes._xmltext import xml_text

# pysnmp class name -> SMI type name in results (Integer is pysnmp's name for Integer32 on the wire).
_TYPE_NAMES = {
    "Integer": "Integer32",
    "Integer32": "Integer32",
    "OctetString": "OctetString",
    "ObjectIdentifier": "ObjectIdentifier",
    "ObjectName": "ObjectIdentifier",
    "IpAddress": "IpAddress",
    "Counter32": "Counter32",
    "Gauge32": "Gauge32",
    "Unsigned32": "Gauge32",
    "TimeTicks": "TimeTicks",
    "Counter64": "Counter64",
    "Opaque": "Opaque",
    "Bits": "OctetString",  # Bits travels as an OCTET STRING on the wire
    "Null": "Null",
    "NoSuchObject": "noSuchObject",
    "NoSuchInstance": "noSuchInstance",
    "EndOfMibView": "endOfMibView",
}
_EMPTY = frozenset({"noSuchObject", "noSuchInstance", "endOfMibView", "Null"})


def normalize(value: Any) -> Value:
    """A pysnmp value as ``(type, python value)``, the same shape the v2c codec returns."""
    smi = _TYPE_NAMES.get(type(value).__name__, type(value).__name__)
    if smi in _EMPTY:
        return smi, None
    if smi in ("OctetString", "Opaque", "IpAddress"):
        return smi, bytes(value.asOctets())
    if smi == "ObjectIdentifier":
        return smi, tuple(int(s) for s in value)
    return smi, int(value)


def render(value: Value) -> tuple[str, str, str | None]:
    """(type, value text, encoding or None). Octet strings are text when printable UTF-8, else hex."""
    smi, raw = value
    if raw is None:
        return smi, "", None
    if isinstance(raw, bytes):
        if smi == "IpAddress":
            return smi, ".".join(str(b) for b in raw), None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            return smi, raw.hex(), "hex"
        if all(c.isprintable() or c in "\t\r\n" for c in text):
            return smi, text, None
        return smi, raw.hex(), "hex"
    if isinstance(raw, tuple):
        return smi, format_oid(raw), None
    return smi, str(raw), None


def varbind_element(oid: Oid, value: Value) -> ET.Element:
    smi, text, encoding = render(value)
    el = ET.Element("varbind", {"oid": format_oid(oid), "type": smi, "value": xml_text(text)})
    if encoding:
        el.set("encoding", encoding)
    return el
