"""Strict parsing of the SNMP job's ``oid_spec_list``: numeric OIDs only, bounded sizes.

Lines are ``get OID [OID...]``, ``getnext OID [OID...]``, ``walk OID`` or ``table OID COL [COL...]``.
MIB names are not accepted: resolving them would load the MIB compiler at run time (slow, and a
large parser exposed to the instance) for no gain a numeric OID cannot give.
"""

from __future__ import annotations

from dataclasses import dataclass

from appliance.errors import PayloadError

MAX_SPEC_CHARS = 100_000
MAX_SPEC_LINES = 1000
MAX_OIDS_PER_LINE = 64
MAX_SUBIDS = 128
MAX_SUBID = 2**32 - 1
OPERATIONS = frozenset({"get", "getnext", "walk", "table"})

Oid = tuple[int, ...]


@dataclass(frozen=True)
class SpecLine:
    op: str  # get | getnext | walk | table
    oids: tuple[Oid, ...]  # for "table": the column OIDs (TABLE.1.COL), walked one by one


def parse_oid(text: str) -> Oid:
    """``1.3.6.1.2.1.1.1.0`` or ``.1.3.6...`` -> a tuple of sub-identifiers, or PayloadError."""
    body = text[1:] if text.startswith(".") else text
    parts = body.split(".")
    if not body or len(parts) > MAX_SUBIDS or not all(p.isdigit() and p.isascii() for p in parts):
        raise PayloadError(f"{text[:60]!r} is not a numeric OID (MIB names are not supported)")
    oid = tuple(int(p) for p in parts)
    if any(s > MAX_SUBID for s in oid) or len(oid) < 2 or oid[0] > 2 or (oid[0] < 2 and oid[1] >= 40):
        raise PayloadError(f"{text[:60]!r} is not a valid OID")
    return oid


def format_oid(oid: Oid) -> str:
    return ".".join(str(s) for s in oid)


def parse_spec(text: str) -> list[SpecLine]:
    if len(text) > MAX_SPEC_CHARS:
        raise PayloadError(f"oid_spec_list is longer than {MAX_SPEC_CHARS} characters")
    lines = [line.strip() for line in text.replace(";", "\n").splitlines()]
    lines = [line for line in lines if line and not line.startswith("#")]
    if not lines:
        raise PayloadError("oid_spec_list is empty; give lines such as 'get 1.3.6.1.2.1.1.1.0'")
    if len(lines) > MAX_SPEC_LINES:
        raise PayloadError(f"oid_spec_list has more than {MAX_SPEC_LINES} lines")
    out: list[SpecLine] = []
    for number, line in enumerate(lines, start=1):
        words = line.split()
        op = words[0].lower()
        args = words[1:]
        if op not in OPERATIONS:
            raise PayloadError(f"oid_spec_list line {number}: unknown operation {words[0][:20]!r}")
        if not args or len(args) > MAX_OIDS_PER_LINE:
            raise PayloadError(f"oid_spec_list line {number}: '{op}' needs 1..{MAX_OIDS_PER_LINE} arguments")
        if op == "walk" and len(args) != 1:
            raise PayloadError(f"oid_spec_list line {number}: 'walk' takes one OID")
        if op == "table":
            if len(args) < 2:
                raise PayloadError(f"oid_spec_list line {number}: 'table' needs the table OID and columns")
            table = parse_oid(args[0])
            columns = []
            for col in args[1:]:
                if not col.isdigit() or not col.isascii() or not 0 < int(col) <= MAX_SUBID:
                    raise PayloadError(f"oid_spec_list line {number}: column {col[:20]!r} is not a number")
                columns.append((*table, 1, int(col)))
            out.append(SpecLine("table", tuple(columns)))
        else:
            out.append(SpecLine(op, tuple(parse_oid(a) for a in args)))
    return out
