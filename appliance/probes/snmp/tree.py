"""The SNMP result as a tree of MIB-named elements under ``<snmp>``, the layout ServiceNow's sensors read.

For each varbind, the longest prefix of its OID that has a name in the compiled-in table decides
where it goes:

- a table column: ``<ifTable><ifEntry instance=".8"><ifDescr type="SnmpOctetString">lo</ifDescr>``
  (one entry element per instance, cells in the order the columns were read);
- a scalar: ``<system><sysDescr oid="1.3.6.1.2.1.1.1" type="SnmpOctetString">Linux...</sysDescr>``
  (instance ``.0`` is implied; any other instance is written as an ``instance`` attribute);
- anything else (no name for the object itself): ``<unnamed oid="FULL.OID" type="...">value</unnamed>``
  under the element of the nearest named ancestor (a name made of the next arc would not be XML).

Every named ancestor is an element, from ``<iso>`` down. Elements at or below the subtree a spec line
asked for carry their ``oid``; the chain above it does not. Hex values carry ``encoding="hex"``.
The result is capped in bytes: ``add`` refuses a varbind that would pass the cap.
"""

from __future__ import annotations

import bisect
import re
import xml.etree.ElementTree as ET
from xml.sax.saxutils import escape, quoteattr

from appliance.mib.oids import Oid, format_oid
from appliance.mib.table import MibNode, MibTable, mib_oids, mib_table
from appliance.probes.snmp.ber import Value
from appliance.probes.snmp.values import render

# Attribute values that quoteattr only wraps in double quotes (nothing to escape or normalise).
_PLAIN_ATTR = re.compile(r"[^&<>\"'\n\r\t]*")


class TreeBuilder:
    """Builds ``<snmp>``; ``add`` returns False once the next varbind would pass ``byte_cap``."""

    def __init__(self, byte_cap: int) -> None:
        self.root = ET.Element("snmp")
        self.bytes = 13  # <snmp></snmp>
        self._cap = byte_cap
        self._mib: MibTable = mib_table()
        self._elements: dict[Oid, ET.Element] = {}
        self._rows: dict[tuple[Oid, Oid], ET.Element] = {}
        self._scope: Oid | None = None
        # Memos for the hot path (a full walk adds thousands of varbinds): a named node's dotted OID,
        # and its ancestors' cost as of the number of elements it was computed at (elements only grow).
        self._dotted: dict[Oid, str] = {}
        self._chain_costs: dict[Oid, tuple[int, int]] = {}
        self._oids = mib_oids()
        self._last: MibNode | None = None
        self._entries: dict[Oid, MibNode | None] = {}

    def scope(self, root: Oid | None) -> None:
        """The subtree the next varbinds were asked for (elements under it get an ``oid``); None
        for get and getnext, where only the leaves carry one."""
        self._scope = root
        element = self._elements.get(root) if root is not None else None
        if element is not None and root is not None and "oid" not in element.attrib:
            element.set("oid", format_oid(root))

    def room(self) -> int:
        """Bytes left under the cap."""
        return self._cap - self.bytes

    def add(self, oid: Oid, value: Value) -> bool:
        kind, text, hexed = render(value)
        node = self._node(oid)
        # Attribute values here are names, dotted OIDs, type names and "hex": plain ASCII, so each
        # attribute costs its key, its value and four bytes (space, '=', two quotes).
        size = _text_bytes(text)
        size += 8 + len(kind) + (15 if hexed else 0)  # type="..." and encoding="hex"
        instance = oid[len(node.oid) :] if node is not None else oid
        entry = self._entry_of(node) if node is not None and node.kind == "column" and instance else None
        row_key: tuple[Oid, Oid] | None = None
        if node is not None and entry is not None:
            name, row_key = node.name, (entry.oid, instance)
            attrs: dict[str, str] = {"type": kind}
            if row_key not in self._rows:
                size += _row_cost(entry, instance)
        elif node is not None and node.kind == "scalar":
            name = node.name
            dotted = self._dotted_oid(node.oid)
            attrs = {"oid": dotted}
            size += 7 + len(dotted)
            if instance != (0,) and instance:
                attrs["instance"] = "." + format_oid(instance)
                size += 12 + len(attrs["instance"])
            attrs["type"] = kind
        else:
            name = "unnamed"
            attrs = {"oid": format_oid(oid), "type": kind}
            size += 7 + len(attrs["oid"])
        if hexed:
            attrs["encoding"] = "hex"
        size += 2 * len(name) + 5
        if self.bytes + size + self._chain_cost(node) > self._cap:
            return False
        if row_key is not None and entry is not None:
            parent = self._row(entry, instance)
        elif node is None:
            parent = self.root
        elif name == "unnamed":
            parent = self._element(node)
        else:
            parent = self._parent_element(node)
        leaf = ET.SubElement(parent, name, attrs)
        leaf.text = text
        self.bytes += size
        return True

    def _node(self, oid: Oid) -> MibNode | None:
        """``named_prefix(oid)``, remembering the last node without named descendants: a walk reads a
        column's (or a scalar's) instances one after another, and each would search every prefix."""
        last = self._last
        if last is not None and oid[: len(last.oid)] == last.oid:
            return last
        node = self._mib.named_prefix(oid)
        if node is not None and self._sealed(node.oid):
            self._last = node
        return node

    def _sealed(self, oid: Oid) -> bool:
        """No named node lies below ``oid`` (so every OID under it resolves to it)."""
        oids = self._oids
        at = bisect.bisect_right(oids, oid)
        return at == len(oids) or oids[at][: len(oid)] != oid

    def _entry_of(self, column: MibNode) -> MibNode | None:
        entry = self._entries.get(column.oid, column)
        if entry is column:  # not looked up yet (a column is never its own entry)
            entry = self._entries[column.oid] = self._mib.by_oid.get(column.oid[:-1])
        return entry

    def _row(self, entry: MibNode, instance: Oid) -> ET.Element:
        row = self._rows.get((entry.oid, instance))
        if row is None:
            table = self._mib.by_oid.get(entry.oid[:-1])
            parent = self._element(table) if table is not None else self._parent_element(entry)
            row = self._rows[(entry.oid, instance)] = ET.SubElement(
                parent, entry.name, {"instance": "." + format_oid(instance)}
            )
        return row

    def _parent_element(self, node: MibNode) -> ET.Element:
        parent = self._mib.named_prefix(node.oid[:-1])
        return self.root if parent is None else self._element(parent)

    def _element(self, node: MibNode) -> ET.Element:
        element = self._elements.get(node.oid)
        if element is None:
            scope = self._scope
            attrs = (
                {"oid": format_oid(node.oid)} if scope is not None and node.oid[: len(scope)] == scope else {}
            )
            element = ET.SubElement(self._parent_element(node), node.name, attrs)
            self._elements[node.oid] = element
            self.bytes += _cost(node.name, attrs, "")
        return element

    def _chain_cost(self, node: MibNode | None) -> int:
        """Bytes the not-yet-created ancestor elements of ``node`` would add (an upper bound)."""
        if node is None:
            return 0
        made = len(self._elements)
        memo = self._chain_costs.get(node.oid)
        if memo is not None and memo[0] == made:
            return memo[1]
        cost = sum(
            _cost(n.name, {"oid": self._dotted_oid(n.oid)}, "")
            for n in self._mib.chain(node.oid)
            if n.oid not in self._elements
        )
        self._chain_costs[node.oid] = (made, cost)
        return cost

    def _dotted_oid(self, oid: Oid) -> str:
        text = self._dotted.get(oid)
        if text is None:
            text = self._dotted[oid] = format_oid(oid)
        return text


def _cost(name: str, attrs: dict[str, str], text: str) -> int:
    """The serialised size of one element: tags, attributes and escaped text."""
    size = 2 * len(name) + 5 + _text_bytes(text)
    for key, value in attrs.items():
        # Names, OIDs and type names are plain ASCII: quoting adds just the two quotes.
        if value.isascii() and _PLAIN_ATTR.fullmatch(value):
            size += len(key) + 4 + len(value)
        else:
            size += len(key) + 2 + len(quoteattr(value).encode("utf-8"))
    return size


def _text_bytes(text: str) -> int:
    """``len(escape(text).encode("utf-8"))`` without building either string for plain text."""
    if "&" in text or "<" in text or ">" in text:
        return len(escape(text).encode("utf-8"))
    return len(text) if text.isascii() else len(text.encode("utf-8"))


def _row_cost(entry: MibNode, instance: Oid) -> int:
    return _cost(entry.name, {"instance": "." + format_oid(instance)}, "")
