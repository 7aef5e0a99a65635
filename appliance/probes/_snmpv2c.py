"""A minimal asyncio SNMPv2c client over one connected UDP socket per job (``_snmpv3`` reuses its socket).

The socket is connected to the policy-checked agent address, so the kernel drops datagrams from
anyone else; a response must also carry our random request id and our community. One request is
outstanding per socket, which keeps matching trivial and the agent's load bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Callable
from typing import TypeVar

from appliance.errors import ProbeError
from appliance.probes._snmpber import BerError, Oid, Response, decode_response, encode_request
from hardening.policy import IPAddress

_QUEUE_DEPTH = 16
T = TypeVar("T")


class NoResponse(ProbeError):
    """The agent did not answer at all (down, filtered, or a community/user it does not know)."""


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes | Exception] = asyncio.Queue(_QUEUE_DEPTH)

    def datagram_received(self, data: bytes, addr: object) -> None:
        with contextlib.suppress(asyncio.QueueFull):  # a flood is dropped, not buffered
            self.queue.put_nowait(data)

    def error_received(self, exc: Exception) -> None:
        with contextlib.suppress(asyncio.QueueFull):
            self.queue.put_nowait(exc)


class V2cChannel:
    """Requests to one agent with one community; ``open`` first, ``close`` always."""

    def __init__(
        self, address: IPAddress, port: int, community: bytes, timeout_s: float, retries: int, where: str
    ) -> None:
        self._remote = (str(address), port)
        self._community = community
        self._timeout_s = timeout_s
        self._retries = retries
        self._where = where
        self._transport: asyncio.DatagramTransport | None = None
        self._protocol: _Protocol | None = None

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            self._transport, self._protocol = await loop.create_datagram_endpoint(
                _Protocol, remote_addr=self._remote
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
        message = encode_request(pdu, request_id, self._community, oids, non_repeaters, max_repetitions)

        def accept(data: bytes) -> Response | None:
            try:
                response = decode_response(data)
            except BerError:
                return None  # not ours or malformed: keep waiting for the real answer
            if response.request_id == request_id and response.community == self._community:
                return response
            return None

        return await self.exchange(lambda: message, accept)

    async def exchange(self, build: Callable[[], bytes], accept: Callable[[bytes], T | None]) -> T:
        """Send ``build()`` (again on each retry) until ``accept`` returns an answer for a datagram;
        NoResponse when every try timed out. ``accept`` may raise to end the exchange at once."""
        assert self._transport is not None and self._protocol is not None, "open() first"
        queue = self._protocol.queue
        while not queue.empty():  # late answers to an earlier, timed-out request
            queue.get_nowait()
        for _ in range(self._retries + 1):
            self._transport.sendto(build())
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
        raise NoResponse(
            f"no SNMP response from {self._where} (agent down, filtered, or wrong community/user)"
        )
