"""A strict, bounded BER codec for SNMPv1/v2c messages and the PDUs SNMPv3 carries (RFC 1157, RFC 3416,
RFC 2578).

Why not pysnmp: pyasn1's generic decoder costs ~70 us per varbind, which made a full-tree walk 7x
slower than net-snmp, and it is a large parser to expose to hostile agents. This decoder understands
exactly one message shape and refuses everything else: definite lengths of at most 4 octets, no
trailing bytes, known tags only, sub-identifiers and integers within their SMI ranges. SNMPv1 has the
same message layout with version 0; its values are the v2c types minus Counter64 and the three
exception values (RFC 1157 has neither), which a v1 response may not carry. The v3 envelope and USM
are in ``usm``.
"""

from __future__ import annotations

from dataclasses import dataclass

from appliance.errors import ProbeError

Oid = tuple[int, ...]
Value = tuple[str, "int | bytes | Oid | None"]

GET, GETNEXT, RESPONSE, GETBULK, REPORT = 0xA0, 0xA1, 0xA2, 0xA5, 0xA8
MAX_MESSAGE_BYTES = 65_507
MAX_VARBINDS = 10_000

_VALUE_TAGS = {
    0x02: "Integer32",
    0x04: "OctetString",
    0x05: "Null",
    0x06: "ObjectIdentifier",
    0x40: "IpAddress",
    0x41: "Counter32",
    0x42: "Gauge32",
    0x43: "TimeTicks",
    0x44: "Opaque",
    0x46: "Counter64",
    0x80: "noSuchObject",
    0x81: "noSuchInstance",
    0x82: "endOfMibView",
}
_UNSIGNED32 = frozenset({0x41, 0x42, 0x43})
# Value types RFC 1157 does not have: a v1 response carrying one is not a v1 response.
_NOT_V1 = frozenset({"Counter64", "noSuchObject", "noSuchInstance", "endOfMibView"})
V1, V2C = 0, 1  # the msgVersion field of the community-based message
_SMALL_INTS = frozenset({0x02, 0x41, 0x42, 0x43})


class BerError(ProbeError):
    """A datagram that is not a well-formed SNMPv1/v2c response."""


@dataclass(frozen=True)
class Response:
    request_id: int
    community: bytes
    error_status: int
    error_index: int
    varbinds: tuple[tuple[Oid, Value], ...]


# ---- encoding -------------------------------------------------------------------------------------


def _len(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def _tlv(tag: int, body: bytes) -> bytes:
    return bytes([tag]) + _len(len(body)) + body


def _int(value: int) -> bytes:
    length = max(1, (value.bit_length() + 8) // 8)
    return _tlv(0x02, value.to_bytes(length, "big", signed=True))


def _base128(n: int) -> bytes:
    chunk = [n & 0x7F]
    n >>= 7
    while n:
        chunk.append(0x80 | (n & 0x7F))
        n >>= 7
    return bytes(reversed(chunk))


def _oid(oid: Oid) -> bytes:
    if len(oid) < 2 or oid[0] > 2 or (oid[0] < 2 and oid[1] >= 40):
        raise ValueError("OID must start with 0.x or 1.x (x < 40) or 2.x")
    return _tlv(0x06, _base128(40 * oid[0] + oid[1]) + b"".join(_base128(sub) for sub in oid[2:]))


def encode_request(
    pdu: int,
    request_id: int,
    community: bytes,
    oids: tuple[Oid, ...],
    non_repeaters: int = 0,
    max_repetitions: int = 0,
    version: int = V2C,
) -> bytes:
    """A v2c GET, GETNEXT or GETBULK message asking for ``oids`` (v1: GET or GETNEXT only)."""
    if version == V1 and pdu == GETBULK:
        raise ValueError("SNMPv1 has no GetBulkRequest")
    if version not in (V1, V2C):
        raise ValueError("community-based SNMP is version 0 (v1) or 1 (v2c)")
    body = (
        _int(version)
        + _tlv(0x04, community)
        + encode_pdu(pdu, request_id, oids, non_repeaters, max_repetitions)
    )
    return _tlv(0x30, body)


def encode_pdu(
    pdu: int, request_id: int, oids: tuple[Oid, ...], non_repeaters: int = 0, max_repetitions: int = 0
) -> bytes:
    """The PDU alone (v2c messages and v3 scoped PDUs carry the same one)."""
    varbinds = b"".join(_tlv(0x30, _oid(o) + b"\x05\x00") for o in oids)
    if pdu == GETBULK:
        fields = _int(request_id) + _int(non_repeaters) + _int(max_repetitions)
    else:
        fields = _int(request_id) + _int(0) + _int(0)
    return _tlv(pdu, fields + _tlv(0x30, varbinds))


def tlv(tag: int, body: bytes) -> bytes:
    """One definite-length TLV (the SNMPv3 message layer builds its envelope with these)."""
    return _tlv(tag, body)


def integer(value: int) -> bytes:
    return _int(value)


# ---- decoding -------------------------------------------------------------------------------------


def _header(buf: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """(tag, start of contents, end of contents) of the TLV at ``pos``, inside ``end``."""
    if pos + 2 > end:
        raise BerError("truncated SNMP message")
    tag, first = buf[pos], buf[pos + 1]
    pos += 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        if count == 0 or count > 4 or pos + count > end:
            raise BerError("unsupported BER length in SNMP message")
        length = int.from_bytes(buf[pos : pos + count], "big")
        pos += count
    if pos + length > end:
        raise BerError("BER length runs past the end of the SNMP message")
    return tag, pos, pos + length


def _expect(buf: bytes, pos: int, end: int, tag: int) -> tuple[int, int]:
    got, start, stop = _header(buf, pos, end)
    if got != tag:
        raise BerError(f"unexpected BER tag 0x{got:02x} in SNMP message")
    return start, stop


def _signed(buf: bytes, start: int, stop: int) -> int:
    if not 1 <= stop - start <= 9:
        raise BerError("bad INTEGER length in SNMP message")
    return int.from_bytes(buf[start:stop], "big", signed=True)


def _decode_oid(buf: bytes, start: int, stop: int) -> Oid:
    if not 1 <= stop - start <= 1024:
        raise BerError("bad OID length in SNMP message")
    raw = buf[start:stop]
    if raw.isascii() and len(raw) <= 127:
        # Every sub-identifier is one octet (almost every OID a walk sees): the octets are the arcs,
        # so neither the minimal-encoding nor the range check can fail.
        first = raw[0]
        return (first // 40, first % 40, *raw[1:]) if first < 80 else (2, first - 80, *raw[1:])
    subs: list[int] = []
    sub = 0
    fresh = True
    for b in buf[start:stop]:
        if b < 0x80:  # the last octet of a sub-identifier (most are one octet)
            subs.append((sub << 7) | b)
            sub = 0
            fresh = True
        elif fresh and b == 0x80:
            raise BerError("non-minimal OID encoding in SNMP message")
        else:
            sub = (sub << 7) | (b & 0x7F)
            fresh = False
    if not fresh or len(subs) > 127:
        raise BerError("bad OID in SNMP message")
    first = subs[0]
    out = (first // 40, first % 40, *subs[1:]) if first < 80 else (2, first - 80, *subs[1:])
    if max(out) > 0xFFFFFFFF:
        raise BerError("OID sub-identifier out of range in SNMP message")
    return out


def _value(buf: bytes, tag: int, start: int, stop: int) -> Value:
    name = _VALUE_TAGS.get(tag)
    if name is None:
        raise BerError(f"unknown SNMP value type 0x{tag:02x}")
    if tag in (0x04, 0x44):
        return name, buf[start:stop]
    if tag == 0x02:
        value = _signed(buf, start, stop)
        if not -(2**31) <= value < 2**31:
            raise BerError("Integer32 out of range in SNMP message")
        return name, value
    if tag in _UNSIGNED32 or tag == 0x46:
        value = _signed(buf, start, stop)
        if not 0 <= value < (2**64 if tag == 0x46 else 2**32):
            raise BerError(f"{name} out of range in SNMP message")
        return name, value
    if tag == 0x06:
        return name, _decode_oid(buf, start, stop)
    if tag == 0x40:
        if stop - start != 4:
            raise BerError("IpAddress must be 4 octets")
        return name, buf[start:stop]
    if stop != start:  # Null and the three exceptions carry no contents
        raise BerError(f"{name} with contents in SNMP message")
    return name, None


def decode_response(buf: bytes, version: int = V2C) -> Response:
    """Decode one Response message of ``version`` (``V1`` or ``V2C``); BerError for anything else."""
    if len(buf) > MAX_MESSAGE_BYTES:
        raise BerError("SNMP message too large")
    start, stop = _expect(buf, 0, len(buf), 0x30)
    if stop != len(buf):
        raise BerError("trailing bytes after SNMP message")
    s, e = _expect(buf, start, stop, 0x02)
    if _signed(buf, s, e) != version:
        raise BerError("not an SNMPv1 message" if version == V1 else "not an SNMPv2c message")
    s, e = _expect(buf, e, stop, 0x04)
    community = buf[s:e]
    _, request_id, status, index, varbinds = decode_pdu(buf, e, stop, (RESPONSE,))
    if version == V1:
        for _, (kind, _) in varbinds:
            if kind in _NOT_V1:
                raise BerError(f"{kind} in an SNMPv1 message")
    return Response(request_id, community, status, index, varbinds)


def header(buf: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """(tag, start of contents, end of contents) of the TLV at ``pos``; BerError past ``end``."""
    return _header(buf, pos, end)


def expect(buf: bytes, pos: int, end: int, tag: int) -> tuple[int, int]:
    """(start, end) of the contents of the TLV at ``pos``, which must have ``tag``."""
    return _expect(buf, pos, end, tag)


def signed(buf: bytes, start: int, stop: int) -> int:
    """The INTEGER in ``buf[start:stop]`` (at most 9 octets)."""
    return _signed(buf, start, stop)


def decode_pdu(
    buf: bytes, pos: int, stop: int, tags: tuple[int, ...]
) -> tuple[int, int, int, int, tuple[tuple[Oid, Value], ...]]:
    """(tag, request id, error status, error index, varbinds) of the PDU that fills ``buf[pos:stop]``."""
    pdu_tag, pdu_start, pdu_stop = _header(buf, pos, stop)
    if pdu_tag not in tags:
        raise BerError(f"unexpected BER tag 0x{pdu_tag:02x} in SNMP message")
    if pdu_stop != stop:
        raise BerError("trailing bytes after SNMP PDU")
    fields = []
    pos = pdu_start
    for _ in range(3):
        s, pos = _expect(buf, pos, pdu_stop, 0x02)
        fields.append(_signed(buf, s, pos))
    list_start, list_stop = _expect(buf, pos, pdu_stop, 0x30)
    if list_stop != pdu_stop:
        raise BerError("trailing bytes after SNMP varbind list")
    return pdu_tag, fields[0], fields[1], fields[2], _varbinds(buf, list_start, list_stop)


def _varbinds(buf: bytes, pos: int, stop: int) -> tuple[tuple[Oid, Value], ...]:
    """The varbinds filling ``buf[pos:stop]``: the hot loop of a walk, so short-form lengths (nearly all
    of them) are read inline; anything else goes through ``_header`` and gets the same checks."""
    varbinds: list[tuple[Oid, Value]] = []
    append = varbinds.append
    while pos < stop:
        if pos + 2 <= stop and buf[pos] == 0x30 and buf[pos + 1] < 0x80:
            vb_start = pos + 2
            vb_stop = vb_start + buf[pos + 1]
            if vb_stop > stop:
                raise BerError("BER length runs past the end of the SNMP message")
        else:
            vb_start, vb_stop = _expect(buf, pos, stop, 0x30)
        if vb_start + 2 <= vb_stop and buf[vb_start] == 0x06 and buf[vb_start + 1] < 0x80:
            s = vb_start + 2
            e = s + buf[vb_start + 1]
            if e > vb_stop:
                raise BerError("BER length runs past the end of the SNMP message")
        else:
            s, e = _expect(buf, vb_start, vb_stop, 0x06)
        oid = _decode_oid(buf, s, e)
        if e + 2 <= vb_stop and buf[e + 1] < 0x80 and buf[e + 1] == vb_stop - e - 2:  # short form, fills it
            tag, s, e = buf[e], e + 2, vb_stop
        else:
            tag, s, e = _header(buf, e, vb_stop)
            if e != vb_stop:
                raise BerError("trailing bytes in SNMP varbind")
        if tag == 0x04:
            value: Value = ("OctetString", buf[s:e])
        elif tag in _SMALL_INTS and 1 <= e - s <= 4 and (tag == 0x02 or buf[s] < 0x80):
            # Four octets at most: within Integer32, and (non-negative) within the unsigned types.
            value = (_VALUE_TAGS[tag], int.from_bytes(buf[s:e], "big", signed=True))
        else:
            value = _value(buf, tag, s, e)
        append((oid, value))
        if len(varbinds) > MAX_VARBINDS:
            raise BerError("too many varbinds in SNMP message")
        pos = vb_stop
    return tuple(varbinds)
