"""Hostile input to the probe-side parsers fails with their own error type, never anything else."""

from __future__ import annotations

import contextlib
import xml.etree.ElementTree as ET

from defusedxml.ElementTree import fromstring
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.errors import PayloadError
from appliance.mib.oids import format_oid, parse_oid
from appliance.payload import xml_text
from appliance.probes._shazzamranges import parse_ranges
from appliance.probes._shazzamspec import parse_port_probes
from appliance.probes.snmp.spec import parse_spec
from appliance.probes.tcpscan import parse_scan
from hardening.known_hosts import KnownHostsError, parse_known_hosts, parse_public_key_file
from tests.probes.conftest import make_job

spec_words = st.sampled_from(
    [
        "get",
        "getnext",
        "walk",
        "table",
        "GET",
        "frob",
        "1.3.6.1",
        ".1.3",
        "1",
        "x",
        ";",
        "\n",
        "ifTable",
        "ifEntry.ifDescr",
        "ifDescr(=lo)",
        "(!=",
        ")",
        ",",
        "//",
        "#",
        "iso.org.dod",
        "mib-2",
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=300), st.lists(spec_words, max_size=20).map(" ".join)))
def test_spec_parser_only_raises_payload_error(text: str) -> None:
    try:
        lines = parse_spec(text)
    except PayloadError:
        return
    for line in lines:
        assert line.op in {"get", "getnext", "walk", "table"} and line.oids


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=2**32 - 1), min_size=2, max_size=40))
def test_oid_round_trip(subids: list[int]) -> None:
    subids[0] %= 3
    if subids[0] < 2:
        subids[1] %= 40
    assert parse_oid(format_oid(tuple(subids))) == tuple(subids)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_known_hosts_parser_only_raises_its_error(data: bytes) -> None:
    for parse in (lambda d: parse_known_hosts(d), lambda d: parse_public_key_file(d, source="f")):
        with contextlib.suppress(KnownHostsError):
            parse(data)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80), st.text(max_size=40), st.text(max_size=8))
def test_scan_parser_only_raises_payload_error(ranges: str, ports: str, timeout: str) -> None:
    job = make_job("Shazzam", "Shazzam", "", ranges=ranges, ports=ports, timeout_ms=timeout)
    try:
        spec = parse_scan(job, 65_536)
    except PayloadError:
        return
    assert spec.ranges and spec.ports and all(1 <= p <= 65535 for p in spec.ports)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=200), st.text(max_size=200)))
def test_xml_text_always_round_trips_through_a_strict_parser(data: bytes | str) -> None:
    el = ET.Element("r", {"a": xml_text(data)})
    el.text = xml_text(data)
    back = fromstring(ET.tostring(el))
    # XML parsers turn CR LF and lone CR in text into LF (ElementTree does not escape CR in text).
    assert (back.text or "") == el.text.replace("\r\n", "\n").replace("\r", "\n")
    assert back.get("a") == el.get("a")


range_words = st.sampled_from(
    [
        '"10.0.0.1"',
        '"10.0.0.1-10.0.0.9"',
        '"10.0.0.0/30"',
        '{"start":"10.0.0.1","end":"10.0.0.2"}',
        "[",
        "]",
        "{",
        "}",
        ",",
        ":",
        '"ranges"',
        '"excludes"',
        '"x"',
        "1",
        "<ranges>",
        "</ranges>",
        "<range>",
        "</range>",
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=200), st.lists(range_words, max_size=25).map("".join)))
def test_shazzam_ranges_parser_only_raises_payload_error(text: str) -> None:
    try:
        ranges = parse_ranges(text)
    except PayloadError:
        return
    assert ranges.blocks and all(b.size >= 0 for b in ranges.blocks)


spec_parts = st.sampled_from(
    [
        "<port_probes>",
        "</port_probes>",
        "<port_probe ",
        "/>",
        ">",
        "</port_probe>",
        'name="a" ',
        'scanner="SNMP" ',
        'scanner="BannerTCP" ',
        'service="s" ',
        'port="1-3" ',
        'port="0" ',
        'protocol="udp" ',
        'protocol="tcp" ',
        "<port>9</port>",
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=200), st.lists(spec_parts, max_size=20).map("".join)))
def test_port_probe_parser_only_raises_payload_error(text: str) -> None:
    try:
        probes = parse_port_probes(text)
    except PayloadError:
        return
    assert probes and all(p.ports and all(1 <= x <= 65535 for x in p.ports) for p in probes)
