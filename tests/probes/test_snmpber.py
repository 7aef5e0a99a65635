"""The v1/v2c BER codec agrees with pysnmp/pyasn1 and refuses malformed or hostile datagrams."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyasn1.codec.ber import decoder, encoder
from pysnmp.proto.api import v1, v2c
from pysnmp.proto.proxy.rfc2576 import V1_TO_V2_VALUE_MAP

from appliance.probes.snmp.ber import (
    GET,
    GETBULK,
    GETNEXT,
    V1,
    BerError,
    _int,
    _oid,
    _tlv,
    decode_response,
    encode_request,
)
from tests.support.pysnmp_oracle import normalize

oids = st.builds(
    lambda first, second, rest: (first, second % 40 if first < 2 else second, *rest),
    st.integers(0, 2),
    st.integers(0, 2**32 - 1),
    st.lists(st.integers(0, 2**32 - 1), max_size=20),
)

values = st.one_of(
    st.integers(-(2**31), 2**31 - 1).map(v2c.Integer32),
    st.binary(max_size=80).map(v2c.OctetString),
    st.just(v2c.Null("")),
    oids.map(v2c.ObjectIdentifier),
    st.binary(min_size=4, max_size=4).map(v2c.IpAddress),
    st.integers(0, 2**32 - 1).map(v2c.Counter32),
    st.integers(0, 2**32 - 1).map(v2c.Gauge32),
    st.integers(0, 2**32 - 1).map(v2c.TimeTicks),
    st.binary(max_size=20).map(v2c.Opaque),
    st.integers(0, 2**64 - 1).map(v2c.Counter64),
    st.sampled_from([v2c.NoSuchObject(""), v2c.NoSuchInstance(""), v2c.EndOfMibView("")]),
)


def pysnmp_response(
    request_id: int, community: bytes, status: int, index: int, vbs: list[tuple[Any, Any]], api: Any = v2c
) -> bytes:
    """A response message as pysnmp encodes it; ``api`` is pysnmp's v2c or v1 protocol module."""
    pdu = (v2c.ResponsePDU if api is v2c else api.GetResponsePDU)()
    api.apiPDU.set_defaults(pdu)
    api.apiPDU.set_request_id(pdu, request_id)
    api.apiPDU.set_error_status(pdu, status)
    api.apiPDU.set_error_index(pdu, index)
    api.apiPDU.set_varbinds(pdu, vbs)
    msg = api.Message()
    api.apiMessage.set_defaults(msg)
    api.apiMessage.set_community(msg, community)
    api.apiMessage.set_pdu(msg, pdu)
    return bytes(encoder.encode(msg))


@settings(max_examples=400, deadline=None)
@given(
    st.integers(1, 2**31 - 1),
    st.binary(max_size=40),
    st.integers(0, 18),
    st.integers(0, 50),
    st.lists(st.tuples(oids, values), max_size=30),
)
def test_decoder_agrees_with_pysnmp(
    rid: int, community: bytes, status: int, index: int, vbs: list[Any]
) -> None:
    wire = pysnmp_response(rid, community, status, index, vbs)
    ours = decode_response(wire)
    assert (ours.request_id, ours.community, ours.error_status, ours.error_index) == (
        rid,
        community,
        status,
        index,
    )
    assert [oid for oid, _ in ours.varbinds] == [tuple(o) for o, _ in vbs]
    assert [value for _, value in ours.varbinds] == [normalize(v) for _, v in vbs]


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from([GET, GETNEXT, GETBULK]),
    st.integers(1, 2**31 - 1),
    st.binary(max_size=40),
    st.lists(oids, min_size=1, max_size=10),
    st.integers(0, 1000),
)
def test_encoder_is_understood_by_pyasn1(
    pdu: int, rid: int, community: bytes, oid_list: list[Any], reps: int
) -> None:
    wire = encode_request(pdu, rid, community, tuple(oid_list), 0, reps)
    msg, rest = decoder.decode(wire, asn1Spec=v2c.Message())
    assert rest == b""
    assert bytes(v2c.apiMessage.get_community(msg)) == community
    decoded = v2c.apiMessage.get_pdu(msg)
    api = v2c.apiBulkPDU if pdu == GETBULK else v2c.apiPDU
    assert int(api.get_request_id(decoded)) == rid
    assert [tuple(o) for o, _ in api.get_varbinds(decoded)] == [tuple(o) for o in oid_list]
    if pdu == GETBULK:
        assert int(v2c.apiBulkPDU.get_max_repetitions(decoded)) == reps


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_only_raise_ber_error(data: bytes) -> None:
    with contextlib.suppress(BerError):
        decode_response(data)
    with contextlib.suppress(BerError):
        decode_response(data, V1)


@settings(max_examples=500, deadline=None)
@given(st.lists(st.tuples(oids, values), min_size=1, max_size=5), st.data())
def test_mutated_responses_decode_or_raise_ber_error(vbs: list[Any], data: st.DataObject) -> None:
    wire = bytearray(pysnmp_response(7, b"public", 0, 0, vbs))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(wire) - 1))
        wire[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(wire)))
    with contextlib.suppress(BerError):
        decode_response(bytes(wire[:cut]))


@pytest.mark.parametrize(
    "wire",
    [
        b"",
        b"\x30\x80\x00\x00",  # indefinite length
        b"\x30\x85\x00\x00\x00\x00\x01\x00",  # 5-octet length
        b"\x30\x03\x02\x01\x00",  # version 0 (SNMPv1)
        b"\x30\x06\x02\x01\x01\x04\x01x" + b"\x00",  # trailing byte inside
    ],
)
def test_specific_malformations(wire: bytes) -> None:
    with pytest.raises(BerError):
        decode_response(wire)


def build(varbind_body: bytes) -> bytes:
    vb = _tlv(0x30, varbind_body)
    pdu = _tlv(0xA2, _int(1) + _int(0) + _int(0) + _tlv(0x30, vb))
    return _tlv(0x30, _int(1) + _tlv(0x04, b"c") + pdu)


@pytest.mark.parametrize(
    "varbind_body",
    [
        _oid((1, 3, 6)) + _int(2**31),  # Integer32 out of range
        _oid((1, 3, 6)) + _tlv(0x41, (2**32).to_bytes(5, "big")),  # Counter32 out of range
        _oid((1, 3, 6)) + _tlv(0x41, b"\xff"),  # negative Counter32
        _oid((1, 3, 6)) + _tlv(0x40, b"\x01\x02\x03"),  # short IpAddress
        _oid((1, 3, 6)) + _tlv(0x05, b"\x00"),  # Null with contents
        _oid((1, 3, 6)) + _tlv(0x47, b""),  # unknown application type
        _tlv(0x06, b"\x2b\x90\x80\x80\x80\x00") + _int(1),  # sub-identifier >= 2**32
        _tlv(0x06, b"\x2b\x80\x01") + _int(1),  # non-minimal sub-identifier
        _tlv(0x06, b"\x2b\x86") + _int(1),  # OID ends inside a sub-identifier
        _oid((1, 3, 6)) + _int(1) + _int(2),  # two values in one varbind
        _oid((1, 3, 6)) + _int(1) + b"\x00",  # a trailing byte after the value
        _oid((1, 3, 6)) + b"\x04\x05ab",  # a value running past its varbind
        _oid((1, 3, 6)) + _tlv(0x41, b"\x80\x00\x00\x00"),  # a 4-octet negative Counter32
        _oid((1, 3, 6)) + _tlv(0x02, b""),  # an INTEGER without octets
        _tlv(0x06, bytes([0x2B, *range(1, 128)])) + _int(1),  # 128 sub-identifiers
    ],
)
def test_hostile_varbinds_are_refused(varbind_body: bytes) -> None:
    assert decode_response(build(_oid((1, 3, 6)) + _int(1))).varbinds  # the frame itself is sound
    with pytest.raises(BerError):
        decode_response(build(varbind_body))


@pytest.mark.parametrize("size", [126, 127, 128, 129, 255, 256, 1000])
def test_values_and_oids_at_length_form_boundaries_agree_with_pysnmp(size: int) -> None:
    """The varbind loop reads short-form lengths inline: a long-form length (0x81 0x80 for 128
    octets) must not be mistaken for one, and multi-octet sub-identifiers take the full decoder."""
    long_oid = (1, 3, 6, *(range(1, min(size, 124))))
    vbs = [
        ((1, 3, 6, 1, 2), v2c.OctetString(bytes(range(256)) * 4)[:size]),
        (long_oid, v2c.Integer32(-5)),
        ((1, 3, 6, 1, 200, 2**32 - 1), v2c.Counter32(2**32 - 1)),
        ((1, 3, 6, 1, 3), v2c.Gauge32(2**31)),
    ]
    ours = decode_response(pysnmp_response(9, b"c", 0, 0, vbs)).varbinds
    assert [oid for oid, _ in ours] == [tuple(o) for o, _ in vbs]
    assert [value for _, value in ours] == [normalize(v) for _, v in vbs]


# ---- SNMPv1: the same layout with version 0, RFC 1157's value types only --------------------------

v1_values = st.one_of(
    st.integers(-(2**31), 2**31 - 1).map(v1.Integer),
    st.binary(max_size=80).map(v1.OctetString),
    st.just(v1.Null("")),
    oids.map(v1.ObjectIdentifier),
    st.binary(min_size=4, max_size=4).map(v1.IpAddress),
    st.integers(0, 2**32 - 1).map(v1.Counter),
    st.integers(0, 2**32 - 1).map(v1.Gauge),
    st.integers(0, 2**32 - 1).map(v1.TimeTicks),
    st.binary(max_size=20).map(v1.Opaque),
)


def as_pysnmp_gave_it(value: Any) -> Any:
    """What the probe got from pysnmp for a v1 value: pysnmp turned v1 PDUs into v2c ones (RFC 2576)."""
    return normalize(V1_TO_V2_VALUE_MAP[value.tagSet].clone(value))


@settings(max_examples=300, deadline=None)
@given(
    st.integers(1, 2**31 - 1),
    st.binary(max_size=40),
    st.integers(0, 5),
    st.integers(0, 50),
    st.lists(st.tuples(oids, v1_values), max_size=30),
)
def test_v1_decoder_agrees_with_pysnmp(
    rid: int, community: bytes, status: int, index: int, vbs: list[Any]
) -> None:
    wire = pysnmp_response(rid, community, status, index, vbs, v1)
    ours = decode_response(wire, V1)
    assert (ours.request_id, ours.community, ours.error_status, ours.error_index) == (
        rid,
        community,
        status,
        index,
    )
    assert [oid for oid, _ in ours.varbinds] == [tuple(o) for o, _ in vbs]
    assert [value for _, value in ours.varbinds] == [as_pysnmp_gave_it(v) for _, v in vbs]
    with pytest.raises(BerError, match="not an SNMPv2c message"):
        decode_response(wire)  # and a v1 answer is never taken for a v2c one


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from([GET, GETNEXT]),
    st.integers(1, 2**31 - 1),
    st.binary(max_size=40),
    st.lists(oids, min_size=1, max_size=10),
)
def test_v1_encoder_is_understood_by_pyasn1(
    pdu: int, rid: int, community: bytes, oid_list: list[Any]
) -> None:
    wire = encode_request(pdu, rid, community, tuple(oid_list), version=V1)
    msg, rest = decoder.decode(wire, asn1Spec=v1.Message())
    assert rest == b""
    assert int(v1.apiMessage.get_version(msg)) == 0
    assert bytes(v1.apiMessage.get_community(msg)) == community
    decoded = v1.apiMessage.get_pdu(msg)
    expected = v1.GetRequestPDU if pdu == GET else v1.GetNextRequestPDU
    assert decoded.tagSet == expected.tagSet
    assert int(v1.apiPDU.get_request_id(decoded)) == rid
    assert [tuple(o) for o, _ in v1.apiPDU.get_varbinds(decoded)] == [tuple(o) for o in oid_list]


def test_v1_has_no_getbulk() -> None:
    with pytest.raises(ValueError, match="GetBulk"):
        encode_request(GETBULK, 1, b"c", ((1, 3, 6),), 0, 10, version=V1)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(oids, v1_values), min_size=1, max_size=5), st.data())
def test_mutated_v1_responses_decode_or_raise_ber_error(vbs: list[Any], data: st.DataObject) -> None:
    wire = bytearray(pysnmp_response(7, b"public", 0, 0, vbs, v1))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(wire) - 1))
        wire[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(wire)))
    with contextlib.suppress(BerError):
        decode_response(bytes(wire[:cut]), V1)


def build_v(version: int, varbind_body: bytes) -> bytes:
    pdu = _tlv(0xA2, _int(1) + _int(0) + _int(0) + _tlv(0x30, _tlv(0x30, varbind_body)))
    return _tlv(0x30, _int(version) + _tlv(0x04, b"c") + pdu)


@pytest.mark.parametrize(
    ("value", "name"),
    [
        (_tlv(0x46, b"\x01\x00\x00\x00\x00"), "Counter64"),
        (_tlv(0x80, b""), "noSuchObject"),
        (_tlv(0x81, b""), "noSuchInstance"),
        (_tlv(0x82, b""), "endOfMibView"),
    ],
    ids=["Counter64", "noSuchObject", "noSuchInstance", "endOfMibView"],
)
def test_v2_only_values_are_refused_in_v1(value: bytes, name: str) -> None:
    body = _oid((1, 3, 6, 1)) + value
    assert decode_response(build_v(1, body)).varbinds[0][1][0] == name  # fine in v2c
    with pytest.raises(BerError, match=f"{name} in an SNMPv1 message"):
        decode_response(build_v(0, body), V1)


@pytest.mark.parametrize("version", [1, 2, 3, -1])
def test_v1_decoder_wants_version_0(version: int) -> None:
    body = _oid((1, 3, 6, 1)) + _int(5)
    assert decode_response(build_v(0, body), V1).varbinds == (((1, 3, 6, 1), ("Integer32", 5)),)
    with pytest.raises(BerError, match="not an SNMPv1 message"):
        decode_response(build_v(version, body), V1)
