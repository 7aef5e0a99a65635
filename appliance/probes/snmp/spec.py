"""Strict parsing of the SNMP job's ``oid_spec_list`` as ServiceNow's sensors write it, bounded in size.

Lines (one per line; ``;`` also separates lines, ``//`` starts a comment, a line starting with ``#``
is a comment):

- ``walk OID`` - every varbind under OID.
- ``table TABLE CHILDREN`` - the table's entries, only the given columns. CHILDREN is a
  comma-separated list of column names (``ifDescr``), names with the entry prefix
  (``ifEntry.ifDescr``) or column numbers; a child may carry a filter ``(=v)`` (value equals v),
  ``(!=v)`` (differs from v) or ``(#v)`` (contains v). With filters, a row is kept when ANY filter
  matches (ServiceNow's r_SNMPProbeParameters); a row with no value in a filtered column does not
  match that filter. midbox's older form ``table OID 1 2 3`` (space-separated numbers) still works.
- ``get OID [OID...]``, ``getnext OID [OID...]`` - midbox's own extension.

An OID is numeric (``1.3.6.1.2.1.1``, a leading dot allowed), a MIB name path
(``iso.org.dod.internet.mgmt.mib-2.system``), a mix (``system.sysDescr.0``) or a bare name from the
compiled-in table (``ifTable``). One that does not start with ``1.3.6.1`` or ``iso`` gets
``1.3.6.1`` / ``iso.org.dod.internet`` put in front, as ServiceNow does (``2.1.1`` is mib-2 system).
OIDs are parsed by ``appliance.mib.oids``; names resolve only through midbox's compiled-in table
(``appliance.mib.table``); nothing is loaded at run time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from appliance.errors import PayloadError
from appliance.mib.oids import (
    MAX_SUBID,
    Oid,
    resolve_oid,
    unknown_name,
)
from appliance.mib.table import MibNode, mib_table

MAX_SPEC_CHARS = 100_000
MAX_SPEC_LINES = 1000
MAX_OIDS_PER_LINE = 64
MAX_FILTER_CHARS = 256
OPERATIONS = frozenset({"get", "getnext", "walk", "table"})

_CHILD = re.compile(r"([A-Za-z0-9.-]+)\s*(?:\(\s*(!=|=|#)(.*)\))?", re.S)


@dataclass(frozen=True)
class Column:
    oid: Oid  # TABLE.ENTRY.COLUMN
    op: str = ""  # "" (no filter) | "=" | "!=" | "#"
    value: str = ""

    def matches(self, text: str | None) -> bool:
        if text is None:
            return False
        if self.op == "=":
            return text == self.value
        if self.op == "!=":
            return text != self.value
        return self.value in text


@dataclass(frozen=True)
class SpecLine:
    op: str  # get | getnext | walk | table
    oids: tuple[Oid, ...]  # for "table": the column OIDs, walked one by one
    table: Oid = ()  # for "table": the table OID
    columns: tuple[Column, ...] = ()  # for "table": the columns with their filters

    @property
    def filtered(self) -> bool:
        return any(c.op for c in self.columns)


def _table_columns(table_text: str, children: str, number: int) -> tuple[Oid, tuple[Column, ...]]:
    where = f"oid_spec_list line {number}"
    table_oid = resolve_oid(table_text)
    mib = mib_table()
    node = mib.by_oid.get(table_oid)
    if node is not None and node.kind == "entry":  # the entry given for the table: step up
        table_oid, node = table_oid[:-1], mib.by_oid.get(table_oid[:-1])
    if node is not None and node.kind != "table":
        raise PayloadError(f"{where}: {node.name!r} is not a table (a walk reads any subtree)")
    entry = next((n for n in mib.children.get(table_oid, {}).values() if n.kind == "entry"), None)
    entry_oid = entry.oid if entry is not None else (*table_oid, 1)
    pieces = _split_children(children, where)
    if not pieces or len(pieces) > MAX_OIDS_PER_LINE:
        raise PayloadError(f"{where}: 'table' needs 1..{MAX_OIDS_PER_LINE} columns after the table")
    columns = []
    for piece in pieces:
        m = _CHILD.fullmatch(piece)
        if m is None:
            raise PayloadError(f"{where}: column {piece[:40]!r} is not NAME, NAME(=v), (!=v) or (#v)")
        name, op, value = m.group(1), m.group(2) or "", (m.group(3) or "").strip()
        if len(value) > MAX_FILTER_CHARS:
            raise PayloadError(f"{where}: a filter value is longer than {MAX_FILTER_CHARS} characters")
        columns.append(Column(_column_oid(name, entry, entry_oid, where), op, value))
    return table_oid, tuple(columns)


def _column_oid(name: str, entry: MibNode | None, entry_oid: Oid, where: str) -> Oid:
    if name.isdigit() and name.isascii():
        if not 0 < int(name) <= MAX_SUBID:
            raise PayloadError(f"{where}: column {name[:20]!r} is out of range")
        return (*entry_oid, int(name))
    head, _, tail = name.rpartition(".")
    if head and (entry is None or head != entry.name):
        raise PayloadError(f"{where}: {name[:60]!r}: the prefix must be the table's entry name")
    node = mib_table().children.get(entry_oid, {}).get(tail)
    if node is None:
        if tail in mib_table().by_name:
            raise PayloadError(f"{where}: {tail[:60]!r} is not a column of this table")
        raise unknown_name(tail)
    return node.oid


def _split_children(text: str, where: str) -> list[str]:
    """Split on commas outside parentheses; midbox's older space-separated numbers also work."""
    pieces, depth, start = [], 0, 0
    for i, c in enumerate(text):
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth < 0:
                raise PayloadError(f"{where}: unbalanced ')' in the column list")
        elif c == "," and depth == 0:
            pieces.append(text[start:i].strip())
            start = i + 1
    if depth:
        raise PayloadError(f"{where}: unbalanced '(' in the column list")
    pieces.append(text[start:].strip())
    if len(pieces) == 1 and " " in pieces[0] and "(" not in pieces[0]:
        pieces = pieces[0].split()
    if any(not p for p in pieces):
        raise PayloadError(f"{where}: an empty column in the list")
    return pieces


def parse_spec(text: str) -> list[SpecLine]:
    if len(text) > MAX_SPEC_CHARS:
        raise PayloadError(f"oid_spec_list is longer than {MAX_SPEC_CHARS} characters")
    lines = [line.split("//", 1)[0].strip() for line in text.replace(";", "\n").splitlines()]
    lines = [line for line in lines if line and not line.startswith("#")]
    if not lines:
        raise PayloadError(
            "oid_spec_list is empty; give lines such as 'walk iso.org.dod.internet.mgmt.mib-2.system'"
        )
    if len(lines) > MAX_SPEC_LINES:
        raise PayloadError(f"oid_spec_list has more than {MAX_SPEC_LINES} lines")
    out: list[SpecLine] = []
    for number, line in enumerate(lines, start=1):
        words = line.split(None, 2)
        op = words[0].lower()
        if op not in OPERATIONS:
            raise PayloadError(
                f"oid_spec_list line {number}: unknown operation {words[0][:20]!r}; "
                "use walk, table, get or getnext"
            )
        if op == "table":
            if len(words) < 3:
                raise PayloadError(f"oid_spec_list line {number}: 'table' needs the table OID and columns")
            table, columns = _table_columns(words[1], words[2], number)
            out.append(SpecLine("table", tuple(c.oid for c in columns), table, columns))
            continue
        args = line.split()[1:]
        if not args or len(args) > MAX_OIDS_PER_LINE:
            raise PayloadError(f"oid_spec_list line {number}: '{op}' needs 1..{MAX_OIDS_PER_LINE} OIDs")
        if op == "walk" and len(args) != 1:
            raise PayloadError(f"oid_spec_list line {number}: 'walk' takes one OID")
        out.append(SpecLine(op, tuple(resolve_oid(a) for a in args)))
    return out
