"""A raw UDP SNMPv1/v2c agent on 127.0.0.1 that misbehaves on cue (the hostile-target kit).

It understands just enough of a request (version, request id, community, PDU type, first OID) to
answer it the way a hostile or broken agent would, in the request's version unless ``reply_version``
says otherwise; ``status`` is the error-status (and index 1) every answer carries. Every mode answers a walk forever unless ``varbinds`` ends
it; the agent counts the requests it saw and the bytes it sent, so a test can show where the
appliance stopped asking.

Modes:

- ``huge``: each answer is one varbind under the asked OID whose value is ``value_bytes`` long
- ``loop``: each answer repeats the asked OID (a walk that never advances)
- ``garbage``: answers that are not BER, then nothing
- ``spoof``: answers with another request id and community (never the awaited answer)
- ``flood``: ``flood`` copies of a huge answer per request
- ``counter64``: each answer's value is a Counter64 (a type SNMPv1 does not have)
- ``exception``: each answer's value is endOfMibView (v2c's exception; SNMPv1 has none)
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from appliance.probes.snmp.ber import (
    RESPONSE,
    Oid,
    _decode_oid,
    _expect,
    _header,
    _int,
    _oid,
    _signed,
    _tlv,
)

MODES = ("huge", "loop", "garbage", "spoof", "flood", "counter64", "exception")


@dataclass
class AgentStats:
    requests: int = 0
    sent_bytes: int = 0
    pdus: set[int] = field(default_factory=set)  # the PDU tags of the requests seen
    errors: list[str] = field(default_factory=list)


def parse_request(buf: bytes) -> tuple[int, int, bytes, int, Oid]:
    """(version, request id, community, PDU tag, first OID) of a v1/v2c request; raises on anything else."""
    start, stop = _expect(buf, 0, len(buf), 0x30)
    s, e = _expect(buf, start, stop, 0x02)
    version = _signed(buf, s, e)
    s, e = _expect(buf, e, stop, 0x04)
    community = buf[s:e]
    pdu, pdu_start, pdu_stop = _header(buf, e, stop)
    s, pos = _expect(buf, pdu_start, pdu_stop, 0x02)
    request_id = _signed(buf, s, pos)
    for _ in range(2):
        s, pos = _expect(buf, pos, pdu_stop, 0x02)
    list_start, list_stop = _expect(buf, pos, pdu_stop, 0x30)
    vb_start, vb_stop = _expect(buf, list_start, list_stop, 0x30)
    s, e = _expect(buf, vb_start, vb_stop, 0x06)
    return version, request_id, community, pdu, _decode_oid(buf, s, e)


def response(
    request_id: int,
    community: bytes,
    varbinds: list[tuple[Oid, bytes]],
    version: int = 1,
    status: int = 0,
    tag: int = 0x04,
) -> bytes:
    """A Response message whose values are ``tag`` (OCTET STRING unless told) with the given contents."""
    body = b"".join(_tlv(0x30, _oid(oid) + _tlv(tag, value)) for oid, value in varbinds)
    fields = _int(request_id) + _int(status) + _int(1 if status else 0)
    return _tlv(0x30, _int(version) + _tlv(0x04, community) + _tlv(RESPONSE, fields + _tlv(0x30, body)))


class HostileSnmpAgent:
    """One UDP socket, one thread; ``mode`` may be changed between jobs."""

    def __init__(
        self,
        mode: str = "huge",
        value_bytes: int = 60_000,
        varbinds: int = 1_000_000,
        reply_version: int = -1,
        status: int = 0,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        self.mode = mode
        self.reply_version = reply_version  # -1: the request's own version
        self.status = status
        self.value_bytes = value_bytes
        self.varbinds = varbinds  # after this many answers the walk ends (endOfMibView by leaving the root)
        self.flood = 20
        self.stats = AgentStats()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.settimeout(0.2)
        self.port: int = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self._sock.recvfrom(65_535)
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                for answer in self._answers(data):
                    self._sock.sendto(answer, peer)
                    self.stats.sent_bytes += len(answer)
            except Exception as e:  # a bad request is the client's problem
                self.stats.errors.append(repr(e))

    def _answers(self, data: bytes) -> list[bytes]:
        version, request_id, community, pdu, oid = parse_request(data)
        self.stats.requests += 1
        self.stats.pdus.add(pdu)
        v = version if self.reply_version < 0 else self.reply_version

        def answer(rid: int, comm: bytes, vbs: list[tuple[Oid, bytes]], tag: int = 0x04) -> bytes:
            return response(rid, comm, vbs, v, self.status, tag)

        value = bytes((0x41 + i % 26) for i in range(self.value_bytes))  # printable: no hex doubling
        if self.mode == "garbage":
            return [b"\x30\x84\xff\xff\xff\xff" + value[:100], b"\x00" * 64]
        if self.mode == "spoof":
            return [answer(request_id ^ 0x5A5A, community + b"x", [((*oid, 1), value)])]
        if self.mode == "loop":
            return [answer(request_id, community, [(oid, value[:100])])]
        if self.mode == "counter64":
            return [answer(request_id, community, [((*oid, 1), (2**40).to_bytes(6, "big"))], 0x46)]
        if self.mode == "exception":
            return [answer(request_id, community, [((*oid, 1), b"")], 0x82)]
        # The next OID under the asked one, ever deeper: a walk that always advances.
        arc = oid[-1] + 1 if len(oid) > 9 else 1
        nxt = (*oid[:-1], arc) if len(oid) > 9 else (*oid, 1, 1, 1, 1)
        if self.stats.requests > self.varbinds:
            nxt = (1, 3, 6, 1, 6, 9)  # outside any root asked for: the walk ends
        return [answer(request_id, community, [(nxt, value)])] * (self.flood if self.mode == "flood" else 1)


@contextmanager
def hostile_snmp_agent(mode: str = "huge", **kw: int) -> Iterator[HostileSnmpAgent]:
    agent = HostileSnmpAgent(mode, **kw)
    agent.start()
    try:
        yield agent
    finally:
        agent.close()
