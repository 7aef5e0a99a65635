"""A reader of SNMP results in the spirit of ServiceNow's ``SNMPResponse`` script include.

Sensors read an SNMP probe's result by MIB-name path, never by number (``getOIDObj`` documents that
numeric OIDs do not work), for example::

    r = SNMPResponse.from_payload(ecc_input_payload)
    r.get_oid_text("iso.org.dod.internet.mgmt.mib-2.system.sysObjectID")   # ".1.3.6.1.4.1.8072.3.2.10"
    r.get_oid_table("iso.org.dod.internet.mgmt.mib-2.interfaces.ifTable", "ifEntry")
    # {"1": {"ifIndex": "1", "ifDescr": "lo", ...}, ...}

``get_oid_obj`` returns None when the path meets a table entry (as ServiceNow's does); tables are
read with ``get_oid_table``, keyed by instance without its leading dot. The camelCase names of the
script include are aliases.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from appliance.limits import MAX_PAYLOAD_BYTES
from appliance.payload import parse_xml


class SNMPResponse:
    """The ``<snmp>`` tree of one SNMP result."""

    def __init__(self, snmp: ET.Element) -> None:
        if snmp.tag != "snmp":
            raise ValueError("SNMPResponse needs the <snmp> element of an SNMP result")
        self._snmp = snmp

    @classmethod
    def from_payload(cls, payload: str | ET.Element) -> SNMPResponse:
        """From an input payload (``<results><result><snmp>``), a ``<result>`` or ``<snmp>`` itself."""
        root = parse_xml(payload, MAX_PAYLOAD_BYTES) if isinstance(payload, str) else payload
        snmp = root if root.tag == "snmp" else root.find(".//snmp")
        if snmp is None:
            raise ValueError("the payload holds no <snmp> result")
        return cls(snmp)

    def get_oid_obj(self, name: str) -> ET.Element | None:
        """The element at the MIB-name path ``name``, or None if absent or a table entry is crossed."""
        node = self._snmp
        for part in name.split("."):
            if not part or part.isdigit():
                return None  # numeric OIDs do not work here, as in ServiceNow's SNMPResponse
            child = node.find(part)
            if child is None or ("instance" in child.attrib and child.get("type") is None):
                return None
            node = child
        return node

    def get_oid_text(self, name: str) -> str | None:
        """The text of the leaf at ``name``; None if absent or empty."""
        node = self.get_oid_obj(name)
        if node is None or not node.text:
            return None
        return node.text

    def get_oid_int(self, name: str) -> int:
        """The integer at ``name``; 0 if absent, empty or not a number."""
        text = self.get_oid_text(name)
        try:
            return int(text) if text is not None else 0
        except ValueError:
            return 0

    def get_oid_table(self, parent_name: str, entry_name: str) -> dict[str, dict[str, str]] | None:
        """Entries named ``entry_name`` under ``parent_name``: instance -> column name -> text."""
        parent = self.get_oid_obj(parent_name)
        if parent is None:
            return None
        table: dict[str, dict[str, str]] = {}
        for entry in parent.findall(entry_name):
            instance = (entry.get("instance") or "").lstrip(".")
            row = table.setdefault(instance, {})
            for cell in entry:
                row[cell.tag] = cell.text or ""
        return table

    # ServiceNow's names.
    getOIDObj = get_oid_obj
    getOIDText = get_oid_text
    getOIDInt = get_oid_int
    getOIDTable = get_oid_table
