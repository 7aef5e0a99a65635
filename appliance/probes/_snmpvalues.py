"""SNMP values as typed, XML-safe result attributes: ``<varbind oid type value [encoding]/>``."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

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
    "Bits": "Bits",
    "Null": "Null",
    "NoSuchObject": "noSuchObject",
    "NoSuchInstance": "noSuchInstance",
    "EndOfMibView": "endOfMibView",
}


def render(value: Any) -> tuple[str, str, str | None]:
    """(type, value text, encoding or None). Octet strings are text when printable UTF-8, else hex."""
    name = type(value).__name__
    smi = _TYPE_NAMES.get(name, name)
    if smi in ("noSuchObject", "noSuchInstance", "endOfMibView", "Null"):
        return smi, "", None
    if smi in ("OctetString", "Opaque", "Bits"):
        raw = bytes(value.asOctets())
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            return smi, raw.hex(), "hex"
        if text.isprintable() or all(c.isprintable() or c in "\t\r\n" for c in text):
            return smi, text, None
        return smi, raw.hex(), "hex"
    if smi == "ObjectIdentifier":
        return smi, format_oid(tuple(int(s) for s in value)), None
    if smi == "IpAddress":
        return smi, ".".join(str(b) for b in bytes(value.asOctets())), None
    return smi, str(int(value)), None


def varbind_element(oid: Oid, value: Any) -> ET.Element:
    smi, text, encoding = render(value)
    el = ET.Element("varbind", {"oid": format_oid(oid), "type": smi, "value": xml_text(text)})
    if encoding:
        el.set("encoding", encoding)
    return el
