"""OIDs as sensors and configs write them: numeric, MIB-named or mixed, checked and bounded.

An OID is numeric (``1.3.6.1.2.1.1``, a leading dot allowed), a MIB name path
(``iso.org.dod.internet.mgmt.mib-2.system``), a mix (``system.sysDescr.0``) or a bare name from the
compiled-in table (``ifTable``). One that does not start with ``1.3.6.1`` or ``iso`` gets
``1.3.6.1`` / ``iso.org.dod.internet`` put in front, as ServiceNow does (``2.1.1`` is mib-2 system).
Names resolve only through the compiled-in table (``appliance.mib.table``).
"""

from __future__ import annotations

import re

from appliance.errors import PayloadError
from appliance.mib.table import mib_table

MAX_SUBIDS = 128
MAX_SUBID = 2**32 - 1
MAX_TOKEN_CHARS = 1024
INTERNET = (1, 3, 6, 1)

Oid = tuple[int, ...]

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9-]{0,127}")


def parse_oid(text: str) -> Oid:
    """``1.3.6.1.2.1.1.1.0`` or ``.1.3.6...`` -> a tuple of sub-identifiers, or PayloadError."""
    body = text[1:] if text.startswith(".") else text
    parts = body.split(".")
    if not body or len(parts) > MAX_SUBIDS or not all(p.isdigit() and p.isascii() for p in parts):
        raise PayloadError(f"{text[:60]!r} is not a numeric OID")
    oid = tuple(int(p) for p in parts)
    check_oid(oid, text)
    return oid


def check_oid(oid: Oid, text: str) -> None:
    if (
        len(oid) < 2
        or len(oid) > MAX_SUBIDS
        or any(s > MAX_SUBID for s in oid)
        or oid[0] > 2
        or (oid[0] < 2 and oid[1] >= 40)
    ):
        raise PayloadError(f"{text[:60]!r} is not a valid OID")


def format_oid(oid: Oid) -> str:
    return ".".join(map(str, oid))


def unknown_name(name: str) -> PayloadError:
    return PayloadError(
        f"MIB name {name[:64]!r} is not in midbox's compiled MIB table; use its numeric OID "
        "(docs/probes-snmp.md lists the modules the table holds)"
    )


def resolve_oid(text: str) -> Oid:
    """A numeric, named or mixed OID as sensors write it -> numeric, with the 1.3.6.1 convenience."""
    if len(text) > MAX_TOKEN_CHARS:
        raise PayloadError(f"OID {text[:40]!r}... is longer than {MAX_TOKEN_CHARS} characters")
    body = text[1:] if text.startswith(".") else text
    parts = body.split(".")
    if not body or len(parts) > MAX_SUBIDS or not all(p.isdigit() or _NAME.fullmatch(p) for p in parts):
        raise PayloadError(f"{text[:60]!r} is not an OID (numbers or MIB names separated by dots)")
    if not all(p.isascii() for p in parts):
        raise PayloadError(f"{text[:60]!r} is not an OID")
    table = mib_table()
    current: Oid = ()
    if parts[0].isdigit():
        if tuple(int(p) if p.isdigit() else -1 for p in parts[:4]) != INTERNET:
            current = INTERNET
    elif parts[0] != "iso":
        # ServiceNow's convenience puts iso.org.dod.internet in front; midbox also takes a bare name.
        if table.child(INTERNET, parts[0]) is not None:
            current = INTERNET
        elif parts[0] not in table.by_name:
            raise unknown_name(parts[0])
    for part in parts:
        if part.isdigit():
            current = (*current, int(part))
            continue
        node = table.child(current, part) if current or part == "iso" else table.by_name.get(part)
        if node is None and current:
            named = table.by_name.get(part)
            if named is not None and named.oid[: len(current)] == current:
                node = named  # a name further down the same subtree (mib-2.ifTable)
        if node is None:
            raise unknown_name(part)
        current = node.oid
    check_oid(current, text)
    return current
