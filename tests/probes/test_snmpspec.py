"""The SNMP spec parser, the compiled-in MIB table, its generator and the result tree (no daemon)."""

from __future__ import annotations

import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.errors import PayloadError
from appliance.mib import names as _mibnames
from appliance.mib.oids import resolve_oid
from appliance.mib.table import mib_table
from appliance.probes.snmp.params import parse_params
from appliance.probes.snmp.spec import parse_spec
from appliance.probes.snmp.tree import TreeBuilder
from devinstance.snmpresponse import SNMPResponse
from tests.probes.conftest import make_job

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "build" / "tools"))
from midbox_build import mibnames


def oid(text: str) -> tuple[int, ...]:
    return tuple(int(a) for a in text.split("."))


@pytest.mark.parametrize(
    ("name", "number", "kind", "syntax"),
    [
        ("sysDescr", "1.3.6.1.2.1.1.1", "scalar", "SnmpOctetString"),
        ("sysObjectID", "1.3.6.1.2.1.1.2", "scalar", "SnmpObjectId"),
        ("sysUpTime", "1.3.6.1.2.1.1.3", "scalar", "SnmpTimeTicks"),
        ("ifTable", "1.3.6.1.2.1.2.2", "table", ""),
        ("ifDescr", "1.3.6.1.2.1.2.2.1.2", "column", "SnmpOctetString"),
        ("ifSpeed", "1.3.6.1.2.1.2.2.1.5", "column", "SnmpGauge32"),
        ("ifInOctets", "1.3.6.1.2.1.2.2.1.10", "column", "SnmpCounter32"),
        ("ifHCInOctets", "1.3.6.1.2.1.31.1.1.1.6", "column", "SnmpCounter64"),
        ("ipAdEntAddr", "1.3.6.1.2.1.4.20.1.1", "column", "SnmpIPAddress"),
        ("ipRouteTable", "1.3.6.1.2.1.4.21", "table", ""),
        ("atTable", "1.3.6.1.2.1.3.1", "table", ""),
        ("ipNetToMediaPhysAddress", "1.3.6.1.2.1.4.22.1.2", "column", "SnmpOctetString"),
        ("dot1dTpFdbPort", "1.3.6.1.2.1.17.4.3.1.2", "column", "SnmpInt32"),
        ("dot1qVlanStaticName", "1.3.6.1.2.1.17.7.1.4.3.1.1", "column", "SnmpOctetString"),
        ("entPhysicalContainedIn", "1.3.6.1.2.1.47.1.1.1.1.4", "column", "SnmpInt32"),
        ("hrSWRunName", "1.3.6.1.2.1.25.4.2.1.2", "column", "SnmpOctetString"),
        ("enterprises", "1.3.6.1.4.1", "node", ""),
        ("cisco", "1.3.6.1.4.1.9", "node", ""),
        ("netSnmp", "1.3.6.1.4.1.8072", "node", ""),
    ],
)
def test_key_entries(name: str, number: str, kind: str, syntax: str) -> None:
    node = mib_table().by_name[name]
    assert (node.oid, node.kind, node.syntax) == (oid(number), kind, syntax)


def test_entries_know_their_index_columns() -> None:
    mib = mib_table()
    assert mib.by_name["ifEntry"].index == ("ifIndex",)
    assert mib.by_name["ifXEntry"].index == ("ifIndex",)  # AUGMENTS ifEntry
    assert mib.by_name["ipNetToMediaEntry"].index == ("ipNetToMediaIfIndex", "ipNetToMediaNetAddress")
    assert mib.by_name["dot1qTpFdbEntry"].index == ("dot1qFdbId", "dot1qTpFdbAddress")


def test_table_is_well_formed() -> None:
    mib = mib_table()
    lines = _mibnames.DATA.splitlines()
    assert len(lines) == _mibnames.NODE_COUNT == len(mib.by_oid) == len(mib.by_name)
    assert all(re.fullmatch(r"[A-Za-z][A-Za-z0-9-]*", n) for n in mib.by_name)  # valid XML names
    for node in mib.by_oid.values():  # every node hangs off a named parent, up to iso
        assert node.oid in ((1,), (0, 0)) or mib.named_prefix(node.oid[:-1]) is not None
        assert (node.kind in ("scalar", "column")) == bool(node.syntax), node.name


OLD_FORMAT = """\
( Integer32, MibTableRow, ) = mibBuilder.importSymbols("SNMPv2-SMI", "Integer32", "MibTableRow")
class Speed(Gauge32, TextualConvention):
    displayHint = 'd'
fooTable = MibTable((1, 3, 6, 1, 4, 1, 99, 1), )
fooEntry = MibTableRow((1, 3, 6, 1, 4, 1, 99, 1, 1), ).setIndexNames((0, "FOO-MIB", "fooIndex"))
fooIndex = MibTableColumn((1, 3, 6, 1, 4, 1, 99, 1, 1, 1), Integer32()).setMaxAccess("readonly")
fooSpeed = MibTableColumn((1, 3, 6, 1, 4, 1, 99, 1, 1, 2), Speed()).setMaxAccess("readonly")
# fooGone = MibScalar((1, 3, 6, 1, 4, 1, 99, 9), Integer32())
"""
NEW_FORMAT = """\
class _BarName_Type(DisplayString):
    subtypeSpec = DisplayString.subtypeSpec
_BarName_Type.__name__ = "DisplayString"
_BarName_Object = MibScalar
barName = _BarName_Object(
    (1, 3, 6, 1, 4, 1, 98, 1),
    _BarName_Type()
)
_BarEntry_Object = MibTableRow
barEntry = _BarEntry_Object(
    (1, 3, 6, 1, 4, 1, 98, 2, 1)
)
barEntry.setIndexNames(
    (0, "BAR-MIB", "barA"),
    (1, "BAR-MIB", "barB"),
)
"""


def test_generator_reads_both_pysmi_formats() -> None:
    bases = {"Gauge32": "Gauge32", "DisplayString": "OctetString"}
    old = {n.name: n for n in mibnames.parse_module("FOO-MIB", OLD_FORMAT, {**bases, "Speed": "Gauge32"})}
    assert set(old) == {"fooTable", "fooEntry", "fooIndex", "fooSpeed"}  # the commented-out line is not
    assert old["fooEntry"].index == "fooIndex" and old["fooSpeed"].syntax == "SnmpGauge32"
    new = {
        n.name: n
        for n in mibnames.parse_module("BAR-MIB", NEW_FORMAT, mibnames._types({"x": NEW_FORMAT}) | bases)
    }
    assert new["barName"].oid == (1, 3, 6, 1, 4, 1, 98, 1) and new["barName"].syntax == "SnmpOctetString"
    assert new["barEntry"].index == "barA,!barB"  # IMPLIED marked


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("iso.org.dod.internet.mgmt.mib-2.system", "1.3.6.1.2.1.1"),
        ("1.3.6.1.2.1.1", "1.3.6.1.2.1.1"),
        (".1.3.6.1.2.1.1", "1.3.6.1.2.1.1"),
        ("2.1.1", "1.3.6.1.2.1.1"),  # 1.3.6.1 is put in front
        ("mgmt.mib-2.system", "1.3.6.1.2.1.1"),  # iso.org.dod.internet is put in front
        ("system.sysDescr.0", "1.3.6.1.2.1.1.1.0"),
        ("1.3.6.1.2.1.system.sysName", "1.3.6.1.2.1.1.5"),
        ("mib-2.ifTable", "1.3.6.1.2.1.2.2"),  # a name further down the same subtree
        ("4.1.9", "1.3.6.1.4.1.9"),
    ],
)
def test_resolve(text: str, number: str) -> None:
    assert resolve_oid(text) == oid(number)


@pytest.mark.parametrize("text", ["fooBar", "iso.org.frob", "system.ifDescr", "interfaces.sysDescr"])
def test_unknown_names_name_the_name(text: str) -> None:
    with pytest.raises(PayloadError, match=r"is not in midbox's compiled MIB table"):
        resolve_oid(text)


def test_table_children_and_filters() -> None:
    (line,) = parse_spec(
        "table iso.org.dod.internet.mgmt.mib-2.entityMIB.entityMIBObjects.entityPhysical.entPhysicalTable "
        "entPhysicalEntry.entPhysicalDescr, entPhysicalContainedIn(=0),entPhysicalName(!= x y ),"
        "entPhysicalModelName(#WS-C) // chassis only"
    )
    assert line.table == oid("1.3.6.1.2.1.47.1.1.1")
    assert [(c.oid[-1], c.op, c.value) for c in line.columns] == [
        (2, "", ""),
        (4, "=", "0"),
        (7, "!=", "x y"),
        (13, "#", "WS-C"),
    ]
    assert line.filtered and line.oids == tuple(c.oid for c in line.columns)
    (old,) = parse_spec("table 1.3.6.1.2.1.2.2 1 2")  # midbox's older form
    assert old.oids == (oid("1.3.6.1.2.1.2.2.1.1"), oid("1.3.6.1.2.1.2.2.1.2")) and not old.filtered


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("table ifTable ifIndex,(=1)", "is not NAME"),
        ("table ifTable ifIndex(=1))", "unbalanced"),
        ("table ifTable ipAdEntAddr", "not a column of this table"),
        ("table ifTable ifXEntry.ifIndex", "prefix must be the table's entry"),
        ("table sysDescr sysDescr", "is not a table"),
        ("table ifTable ifIndex,,ifDescr", "empty column"),
        ("walk " + "a" * 2000, "longer than"),
        ("frob 1.3", "use walk, table, get or getnext"),
        ("table ifTable ifDescr(=" + "x" * 300 + ")", "filter value is longer"),
    ],
)
def test_bad_specs(spec: str, message: str) -> None:
    with pytest.raises(PayloadError, match=message):
        parse_spec(spec)


def test_parameters_as_documented() -> None:
    p = parse_params(make_job("SNMP", "x", "h", oid_spec_list="walk system"))
    assert (p.timeout_s, p.retries, p.use_bulk, p.index, p.version) == (1.5, 2, False, 0, None)
    p = parse_params(make_job("SNMP", "x", "h", oid_spec_list="walk system", use_getbulk="TRUE", index="12"))
    assert p.use_bulk and p.index == 12
    with pytest.raises(PayloadError, match="result_format=JSON is not supported by midbox"):
        parse_params(make_job("SNMP", "x", "h", oid_spec_list="walk system", result_format="json"))
    with pytest.raises(PayloadError, match="'1', '2c' or '3'"):
        parse_params(make_job("SNMP", "x", "h", oid_spec_list="walk system", version="4"))


def test_tree_layout_and_byte_cap() -> None:
    tree = TreeBuilder(10_000)
    tree.scope(oid("1.3.6.1.2.1.2.2"))
    for instance in (1, 2):
        assert tree.add((*oid("1.3.6.1.2.1.2.2.1.1"), instance), ("Integer32", instance))
    for instance, mac in ((1, b""), (2, b"\x00\x1a\xff\x01\x02\x03")):
        assert tree.add((*oid("1.3.6.1.2.1.2.2.1.6"), instance), ("OctetString", mac))
    tree.scope(None)
    assert tree.add(oid("1.3.6.1.4.1.99999.1.0"), ("OctetString", b"<&>\x01"))
    text = ET.tostring(tree.root, encoding="unicode")
    assert len(text.encode()) <= tree.bytes  # the estimate is an upper bound
    r = SNMPResponse.from_payload(f"<results><result>{text}</result></results>")
    assert r.getOIDTable("iso.org.dod.internet.mgmt.mib-2.interfaces.ifTable", "ifEntry") == {
        "1": {"ifIndex": "1", "ifPhysAddress": ""},
        "2": {"ifIndex": "2", "ifPhysAddress": "00:1a:ff:01:02:03"},
    }
    unnamed = tree.root.find("iso/org/dod/internet/private/enterprises/unnamed")
    assert unnamed is not None and unnamed.get("oid") == "1.3.6.1.4.1.99999.1.0"
    assert unnamed.get("encoding") == "hex" and unnamed.text == "3c:26:3e:01"
    small = TreeBuilder(600)
    added = 0
    while small.add((*oid("1.3.6.1.2.1.1.1"), added), ("OctetString", b"x" * 20)):
        added += 1
    assert 0 < added < 10 and len(ET.tostring(small.root)) <= 600


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_tree_is_the_same_without_the_node_memo(data: st.DataObject) -> None:
    """``add`` reuses the last named node for the OIDs under it; that must never change where a
    varbind lands, also when a named node lies deeper under an OID the walk just passed."""
    named = sorted(mib_table().by_oid)
    base = data.draw(st.integers(0, len(named) - 40))
    prefixes = named[base : base + 40]
    suffix = st.lists(st.integers(0, 300), max_size=4).map(tuple)
    rows = sorted({(*data.draw(st.sampled_from(prefixes)), *data.draw(suffix)) for _ in range(60)})
    values = st.one_of(st.integers(0, 9).map(lambda v: ("Integer32", v)), st.binary(max_size=6).map(
        lambda v: ("OctetString", v)))  # fmt: skip
    pairs = [(o, data.draw(values)) for o in rows if len(o) > 1]
    cap = data.draw(st.integers(200, 20_000))
    memo, plain = TreeBuilder(cap), TreeBuilder(cap)
    plain._sealed = lambda oid: False  # type: ignore[method-assign]
    for tree in (memo, plain):
        tree.scope(prefixes[0])
    assert [memo.add(o, v) for o, v in pairs] == [plain.add(o, v) for o, v in pairs]
    assert ET.tostring(memo.root) == ET.tostring(plain.root)
    # The bound is on the text the appliance sends (encoding="unicode", then UTF-8), not on tostring's
    # default ASCII output, which writes a non-ASCII character as a longer character reference.
    assert len(ET.tostring(memo.root, encoding="unicode").encode()) <= memo.bytes == plain.bytes
