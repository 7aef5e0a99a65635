"""A minimal asyncio SNMPv1/v2c client over one connected UDP socket per job (``v3`` reuses its socket).

The socket is connected to the policy-checked agent address, so the kernel drops datagrams from
anyone else; a response must also carry our version, our random request id and our community. The
agent's load is bounded by the caller (the per-agent request cap), not by the socket. SNMPv1 is the
same channel with message version 0 (no GetBulk; the caller maps v1's errors, see ``session``).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Callable
from typing import TypeVar

from appliance.errors import ProbeError
from appliance.probes.snmp.ber import (
    V2C,
    BerError,
    Oid,
    Response,
    decode_response,
    encode_request,
    expect,
    header,
    signed,
)
from hardening.policy import IPAddress

_QUEUE_DEPTH = 16
T = TypeVar("T")


class NoResponseError(ProbeError):
    """The agent did not answer at all (down, filtered, or a community/user it does not know)."""


class _Protocol(asyncio.DatagramProtocol):
    """Hands each datagram to the one request waiting for its id (read from the envelope alone, so a
    flood costs a few header reads and nothing is decoded twice); anything else is dropped."""

    def __init__(self, key: Callable[[bytes], int]) -> None:
        self.key = key
        self.waiting: dict[int, asyncio.Queue[bytes | Exception]] = {}

    def datagram_received(self, data: bytes, addr: object) -> None:
        try:
            queue = self.waiting.get(self.key(data))
        except BerError:
            return
        if queue is not None:
            with contextlib.suppress(asyncio.QueueFull):  # a flood is dropped, not buffered
                queue.put_nowait(data)

    def error_received(self, exc: Exception) -> None:
        for queue in self.waiting.values():
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(exc)


class V2cChannel:
    """Requests to one agent with one community; ``open`` first, ``close`` always. Several requests may
    be outstanding at once (a walk's lanes): each waits for datagrams carrying its own id.
    ``version`` is the message version: ``ber.V2C`` (1), or ``ber.V1`` (0) for SNMPv1."""

    def __init__(
        self,
        address: IPAddress,
        port: int,
        community: bytes,
        timeout_s: float,
        retries: int,
        where: str,
        version: int = V2C,
    ) -> None:
        self._remote = (str(address), port)
        self._community = community
        self._version = version
        self._timeout_s = timeout_s
        self._retries = retries
        self._where = where
        self._transport: asyncio.DatagramTransport | None = None
        self._protocol: _Protocol | None = None

    def _key(self, data: bytes) -> int:
        """The request id of a v2c message (BerError if it has none)."""
        return peek_request_id(data)

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            self._transport, self._protocol = await loop.create_datagram_endpoint(
                lambda: _Protocol(self._key), remote_addr=self._remote
            )
        except OSError as e:
            raise ProbeError(f"cannot open a UDP socket to {self._where}: {e.strerror}") from e

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    async def request(
        self, pdu: int, oids: tuple[Oid, ...], non_repeaters: int = 0, max_repetitions: int = 0
    ) -> Response:
        request_id = secrets.randbelow(2**31 - 2) + 1
        message = encode_request(
            pdu, request_id, self._community, oids, non_repeaters, max_repetitions, self._version
        )

        def accept(data: bytes) -> Response | None:
            try:
                response = decode_response(data, self._version)
            except BerError:
                return None  # not ours or malformed: keep waiting for the real answer
            if response.request_id == request_id and response.community == self._community:
                return response
            return None

        return await self.exchange(lambda: (request_id, message), accept)

    async def exchange(
        self, build: Callable[[], tuple[int, bytes]], accept: Callable[[bytes], T | None]
    ) -> T:
        """Send ``build()``'s message (built again on each retry) until ``accept`` returns an answer for
        a datagram carrying its id; NoResponseError when every try timed out. ``accept`` may raise."""
        assert self._transport is not None and self._protocol is not None, "open() first"
        waiting = self._protocol.waiting
        queue: asyncio.Queue[bytes | Exception] = asyncio.Queue(_QUEUE_DEPTH)
        ids: list[int] = []
        try:
            for _ in range(self._retries + 1):
                key, message = build()
                ids.append(key)
                waiting[key] = queue
                self._transport.sendto(message)
                deadline = time.monotonic() + self._timeout_s
                while (remaining := deadline - time.monotonic()) > 0:
                    try:
                        item = await asyncio.wait_for(queue.get(), remaining)
                    except TimeoutError:
                        break
                    if isinstance(item, Exception):
                        continue  # ICMP unreachable and the like: retry, then report no response
                    answer = accept(item)
                    if answer is not None:
                        return answer
        finally:
            for key in ids:  # late answers to a finished request are dropped on arrival
                if waiting.get(key) is queue:
                    del waiting[key]
        raise NoResponseError(
            f"no SNMP response from {self._where} (agent down, filtered, or wrong community/user)"
        )


def peek_request_id(data: bytes) -> int:
    """The request id of a v1 or v2c message, read without decoding the rest."""
    start, stop = expect(data, 0, len(data), 0x30)
    _, pos = expect(data, start, stop, 0x02)
    _, pos = expect(data, pos, stop, 0x04)
    _, pdu_start, pdu_stop = header(data, pos, stop)
    s, e = expect(data, pdu_start, pdu_stop, 0x02)
    return signed(data, s, e)
