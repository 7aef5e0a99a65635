"""build/mibnames: generate appliance/mib/names.py, midbox's compiled-in MIB name table.

The appliance never compiles or loads a MIB at run time; it ships this generated, read-only table of
numeric OID -> name, node kind, SMI syntax of leaves and index columns of table entries. Regenerate
(development time only) with:

    .venv/bin/pip --isolated download --no-deps -d MIBDIR pysnmp-mibs==0.1.6   # the project's venv
    .venv/bin/python build/mibnames --wheel MIBDIR/pysnmp_mibs-0.1.6-py2.py3-none-any.whl  # writes it
    .venv/bin/python build/mibnames --wheel MIBDIR/pysnmp_mibs-0.1.6-py2.py3-none-any.whl --check

Sources, read as TEXT and never imported or executed: the precompiled pysnmp modules inside the
``pysnmp-mibs`` wheel (pysmi 0.0.x output) and the MIB modules pysnmp 7 itself ships (pysmi 1.x
output; found with importlib's finder, which does not run pysnmp). Both formats are parsed by the
small regular-expression reader below: object definitions ``name = Kind((1, 3, ...), Syntax...``
(directly or through an alias such as ``_SysDescr_Object = MibScalar``), syntax classes and aliases
(``class DisplayString(TextualConvention, OctetString)``, ``_SysUpTime_Type = TimeTicks``), index
names (``setIndexNames((0, "IF-MIB", "ifIndex"))``) and AUGMENTS (``setIndexNames(*ifEntry...``).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import re
import sys
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
OUTPUT = REPO / "appliance" / "mib" / "names.py"

# Modules whose objects go into the table, in priority order: when two modules name the same OID
# (RFC1213-MIB and IF-MIB both define ifTable), the earlier module wins.
MODULES = (
    "SNMPv2-SMI",
    "SNMPv2-MIB",
    "SNMP-FRAMEWORK-MIB",
    "IF-MIB",
    "IP-MIB",
    "IP-FORWARD-MIB",
    "TCP-MIB",
    "UDP-MIB",
    "IPV6-MIB",
    "RFC1213-MIB",
    "BRIDGE-MIB",
    "P-BRIDGE-MIB",
    "Q-BRIDGE-MIB",
    "ENTITY-MIB",
    "HOST-RESOURCES-MIB",
    "HOST-RESOURCES-TYPES",
    "EtherLike-MIB",
    "Printer-MIB",
    "CISCO-SMI",
    "JUNIPER-SMI",
    "ALCATEL-IND1-BASE",
    "NET-SNMP-MIB",
    "UCD-SNMP-MIB",
)

# The ASN.1 root arc (ITU-T X.660); pysnmp defines it in code, not as a parseable object.
ROOTS = {(1,): ("iso", "node", "", "")}

_KINDS = {
    "MibIdentifier": "node",
    "ObjectIdentity": "node",
    "ModuleIdentity": "node",
    "MibScalar": "scalar",
    "MibTable": "table",
    "MibTableRow": "entry",
    "MibTableColumn": "column",
}
# SMI base type -> the type name results carry (ServiceNow's names).
SYNTAX = {
    "OctetString": "SnmpOctetString",
    "Bits": "SnmpOctetString",
    "ObjectIdentifier": "SnmpObjectId",
    "Integer32": "SnmpInt32",
    "Integer": "SnmpInt32",
    "Unsigned32": "SnmpGauge32",
    "Gauge32": "SnmpGauge32",
    "Gauge": "SnmpGauge32",
    "Counter32": "SnmpCounter32",
    "Counter": "SnmpCounter32",
    "Counter64": "SnmpCounter64",
    "TimeTicks": "SnmpTimeTicks",
    "IpAddress": "SnmpIPAddress",
    "NetworkAddress": "SnmpIPAddress",
    "Opaque": "SnmpOpaque",
}

_COMMENT = re.compile(r"^\s*#.*$", re.M)
_DEF = re.compile(r"^([A-Za-z_]\w*)\s*=\s*(\w+)\(\s*\(([\d,\s]+)\)\s*,?\s*(\w+)?", re.M)
_ALIAS = re.compile(r"^([A-Za-z_]\w*)\s*=\s*([A-Za-z_]\w*)\s*$", re.M)
_CLASS = re.compile(r"^class\s+(\w+)\(([\w\s,.]+)\)\s*:", re.M)
_INDEX_OLD = re.compile(r"^(\w+)\s*=\s*\w+\(.*\)\.setIndexNames\((\(.*)\)\s*$", re.M)
_INDEX_NEW = re.compile(r"^(\w+)\.setIndexNames\(\s*\n((?:[ \t]*\(.*\),?[ \t]*\n)+)\)", re.M)
_INDEX_ITEM = re.compile(r'\(\s*(\d)\s*,\s*"([\w-]+)"\s*,\s*"([\w-]+)"\s*\)')
_AUGMENTS = re.compile(r"^(\w+)\.setIndexNames\(\*(\w+)\.getIndexNames\(\)\)", re.M)
_EXPORT_NAME = re.compile(r'"([A-Za-z][\w-]*-[\w-]*)"\s*:\s*(\w+)')
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9-]*")


@dataclass(frozen=True)
class Node:
    oid: tuple[int, ...]
    name: str
    kind: str  # node | scalar | table | entry | column
    syntax: str  # result type name for scalar and column, else ""
    index: str  # entry: comma-separated index column names ("!" prefix: IMPLIED), else ""
    module: str


def read_sources(wheel: Path) -> dict[str, str]:
    """Module name -> text: pysnmp 7's own modules, then the wheel's (which add, never replace)."""
    texts: dict[str, str] = {}
    spec = importlib.util.find_spec("pysnmp")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("pysnmp is not installed in this Python; run with the project venv")
    mibs = Path(next(iter(spec.submodule_search_locations))) / "smi" / "mibs"
    for path in sorted(mibs.glob("*.py")):
        texts[path.stem] = path.read_text(encoding="utf-8")
    with zipfile.ZipFile(wheel) as zf:
        for info in sorted(zf.infolist(), key=lambda i: i.filename):
            name = info.filename
            if name.startswith("pysnmp_mibs/") and name.endswith(".py") and info.file_size < 5_000_000:
                stem = name[len("pysnmp_mibs/") : -3]
                texts.setdefault(stem, zf.read(info).decode("utf-8"))
    return texts


def _types(texts: dict[str, str]) -> dict[str, str]:
    """Every class or alias name seen in any module -> its base (TextualConvention dropped)."""
    bases: dict[str, str] = {}
    for text in texts.values():
        body = _COMMENT.sub("", text)
        for name, parents in _CLASS.findall(body):
            names = [p.strip().split(".")[-1] for p in parents.split(",") if p.strip()]
            names = [p for p in names if p not in ("TextualConvention", "object")]
            if names and name not in SYNTAX:
                bases.setdefault(name, names[0])
        for name, target in _ALIAS.findall(body):
            if name not in SYNTAX:
                bases.setdefault(name, target)
    return bases


def _syntax(name: str | None, bases: dict[str, str]) -> str:
    seen = 0
    while name is not None and name not in SYNTAX and seen < 20:
        name = bases.get(name)
        seen += 1
    return SYNTAX.get(name or "", "")


def parse_module(module: str, text: str, bases: dict[str, str]) -> list[Node]:
    body = _COMMENT.sub("", text)
    renames = {var: real for real, var in _EXPORT_NAME.findall(body)}
    aliases = dict(_ALIAS.findall(body))
    indexes: dict[str, str] = {}
    for var, items in _INDEX_OLD.findall(body) + _INDEX_NEW.findall(body):
        cols = [("!" if implied != "0" else "") + col for implied, _, col in _INDEX_ITEM.findall(items)]
        if cols:
            indexes[var] = ",".join(cols)
    for var, other in _AUGMENTS.findall(body):
        indexes[var] = indexes.get(other, "=" + renames.get(other, other))  # resolved in build_table
    nodes = []
    for var, callee, arcs, syntax in _DEF.findall(body):
        kind = _KINDS.get(aliases.get(callee, callee))
        if kind is None:
            continue
        oid = tuple(int(a) for a in arcs.replace(" ", "").strip(",").split(",") if a.strip())
        name = renames.get(var, var)
        if not oid or not _NAME.fullmatch(name):
            continue
        leaf = kind in ("scalar", "column")
        nodes.append(
            Node(oid, name, kind, _syntax(syntax, bases) if leaf else "", indexes.get(var, ""), module)
        )
    return nodes


def build_table(texts: dict[str, str]) -> list[Node]:
    bases = _types(texts)
    by_oid: dict[tuple[int, ...], Node] = {
        oid: Node(oid, *fields, module="X.660") for oid, fields in ROOTS.items()
    }
    missing = [m for m in MODULES if m not in texts]
    if missing:
        raise SystemExit(f"MIB modules not found in the sources: {', '.join(missing)}")
    for module in MODULES:
        for node in parse_module(module, texts[module], bases):
            by_oid.setdefault(node.oid, node)
    by_name = {n.name: n for n in reversed(list(by_oid.values()))}
    for oid, node in by_oid.items():
        if node.index.startswith("="):  # AUGMENTS an entry of another module: same index
            base = by_name.get(node.index[1:])
            by_oid[oid] = replace(node, index=base.index if base and not base.index.startswith("=") else "")
    return [by_oid[o] for o in sorted(by_oid)]


def render(nodes: list[Node], source_digest: str) -> str:
    rows = "\n".join(
        " ".join((".".join(str(a) for a in n.oid), n.name, n.kind[0], n.syntax or "-", n.index or "-"))
        for n in nodes
    )
    return (
        "# ruff: noqa: E501 - generated data: one line per MIB node\n"
        '"""GENERATED by build/mibnames (build/tools/midbox_build/mibnames.py); do not edit by hand.\n\n'
        "midbox's compiled-in MIB name table: one line per node, ``OID NAME KIND SYNTAX INDEX`` where\n"
        "KIND is n(ode), s(calar), t(able), e(ntry) or c(olumn), SYNTAX the result type of a leaf and\n"
        'INDEX the index columns of an entry ("!" marks IMPLIED); "-" means none.\n'
        f"Modules: {', '.join(MODULES)}.\n"
        f"Source digest (sha256 of the module texts read): {source_digest}\n"
        '"""\n\n'
        f"NODE_COUNT = {len(nodes)}\n\n"
        f'DATA = """\\\n{rows}\n"""\n'
    )


def generate(wheel: Path) -> str:
    texts = read_sources(wheel)
    digest = hashlib.sha256()
    for module in MODULES:
        digest.update(module.encode() + b"\0" + texts.get(module, "").encode() + b"\0")
    return render(build_table(texts), digest.hexdigest())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="build/mibnames", description=__doc__.splitlines()[0])
    parser.add_argument("--wheel", type=Path, required=True, help="the downloaded pysnmp-mibs wheel")
    parser.add_argument("--check", action="store_true", help="exit 1 if the committed table differs")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    text = generate(args.wheel)
    if args.check:
        current = args.output.read_text(encoding="utf-8") if args.output.exists() else ""
        if current != text:
            print(f"{args.output} is stale; regenerate with build/mibnames --wheel WHEEL", file=sys.stderr)
            return 1
        print(f"{args.output} is up to date")
        return 0
    args.output.write_text(text, encoding="utf-8")
    print(f"wrote {args.output}: {text.count(chr(10))} lines, {len(text.encode())} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
