"""The HTTP probe's own transport (PinnedTransport) against real loopback servers that misbehave on cue.

Each server is an asyncio TCP server written for the case: it answers with exact bytes, closes
connections at chosen moments, and counts the connections it accepted.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httpx
import pytest

from appliance.limits import HTTP_IDLE_CONNECTIONS
from appliance.probes._httppool import PinnedTransport

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


@dataclass
class Server:
    port: int = 0
    accepted: int = 0
    requests: list[bytes] = field(default_factory=list)


Handler = Callable[[Server, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader) -> bytes | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            head += await reader.readexactly(int(line.split(b":")[1]))
    return head


async def keep_alive(server: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while (request := await read_request(reader)) is not None:
        server.requests.append(request)
        writer.write(OK)
        await writer.drain()


def serve(handler: Handler, scenario: Callable[[Server, PinnedTransport], Awaitable[None]]) -> Server:
    server = Server()

    async def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        server.accepted += 1
        try:
            await handler(server, reader, writer)
        finally:
            writer.close()

    async def go() -> None:
        listener = await asyncio.start_server(connected, "127.0.0.1", 0)
        server.port = listener.sockets[0].getsockname()[1]
        transport = PinnedTransport(None)
        try:
            await scenario(server, transport)
        finally:
            await transport.aclose()
            listener.close()

    asyncio.run(go())
    return server


async def fetch(server: Server, transport: PinnedTransport, method: str = "GET", path: str = "/") -> bytes:
    request = httpx.Request(
        method,
        f"http://127.0.0.1:{server.port}{path}",
        extensions={"timeout": dict.fromkeys(("connect", "read", "write", "pool"), 5.0)},
    )
    response = await transport.handle_async_request(request)
    try:
        return b"".join([chunk async for chunk in response.stream])  # type: ignore[union-attr]
    finally:
        await response.aclose()


def test_sequential_requests_reuse_one_connection() -> None:
    async def scenario(server: Server, transport: PinnedTransport) -> None:
        for _ in range(5):
            assert await fetch(server, transport) == b"ok"

    server = serve(keep_alive, scenario)
    assert server.accepted == 1 and len(server.requests) == 5


def test_concurrent_requests_each_get_a_connection_and_idle_ones_are_capped() -> None:
    async def scenario(server: Server, transport: PinnedTransport) -> None:
        bodies = await asyncio.gather(*(fetch(server, transport) for _ in range(HTTP_IDLE_CONNECTIONS + 6)))
        assert bodies == [b"ok"] * (HTTP_IDLE_CONNECTIONS + 6)
        assert sum(len(c) for c in transport._idle.values()) == HTTP_IDLE_CONNECTIONS

    assert serve(keep_alive, scenario).accepted == HTTP_IDLE_CONNECTIONS + 6


def test_connection_close_is_honoured() -> None:
    async def once(server: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        await reader.read()  # keeps the socket open: only the header says not to reuse it

    async def scenario(server: Server, transport: PinnedTransport) -> None:
        assert [await fetch(server, transport) for _ in range(2)] == [b"ok", b"ok"]

    assert serve(once, scenario).accepted == 2


def test_extra_bytes_after_an_answer_are_never_read_as_the_next_answer() -> None:
    async def smuggle(server: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(OK + b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nforged")
        await writer.drain()
        await keep_alive(server, reader, writer)

    async def scenario(server: Server, transport: PinnedTransport) -> None:
        assert await fetch(server, transport) == b"ok"
        await asyncio.sleep(0.1)  # the extra bytes arrive while the connection is idle
        assert await fetch(server, transport) == b"ok"

    assert serve(smuggle, scenario).accepted == 2


def test_a_body_left_unread_closes_its_connection() -> None:
    async def scenario(server: Server, transport: PinnedTransport) -> None:
        request = httpx.Request("GET", f"http://127.0.0.1:{server.port}/", extensions={"timeout": {}})
        response = await transport.handle_async_request(request)
        await response.aclose()  # before reading "ok"
        assert await fetch(server, transport) == b"ok"

    assert serve(keep_alive, scenario).accepted == 2


@pytest.mark.parametrize(("method", "retried"), [("GET", True), ("DELETE", True), ("POST", False)])
def test_a_reused_connection_closed_under_a_request(method: str, retried: bool) -> None:
    # The server answers one request per connection but says keep-alive, then closes on reading the
    # next: an idempotent request is sent again on a new connection, a POST is reported instead.
    async def one_only(server: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        server.requests.append(await read_request(reader) or b"")
        writer.write(OK)
        await writer.drain()
        await read_request(reader)
        writer.transport.abort()

    async def scenario(server: Server, transport: PinnedTransport) -> None:
        assert await fetch(server, transport, method) == b"ok"
        if retried:
            assert await fetch(server, transport, method) == b"ok"
        else:
            with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
                await fetch(server, transport, method)

    server = serve(one_only, scenario)
    assert server.accepted == (2 if retried else 1)


def test_a_fresh_connection_closed_without_an_answer_is_an_error() -> None:
    async def hang_up(server: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)

    async def scenario(server: Server, transport: PinnedTransport) -> None:
        with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
            await fetch(server, transport)

    assert serve(hang_up, scenario).accepted == 1


def test_a_malformed_answer_is_a_protocol_error_and_not_pooled() -> None:
    async def garbage(server: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\nok")
        await writer.drain()
        await reader.read()

    async def scenario(server: Server, transport: PinnedTransport) -> None:
        with pytest.raises(httpx.RemoteProtocolError):
            await fetch(server, transport)
        assert transport._idle == {}

    serve(garbage, scenario)


def test_an_oversized_head_is_refused() -> None:
    async def huge(server: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 200_000 + b"\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        await reader.read()

    async def scenario(server: Server, transport: PinnedTransport) -> None:
        with pytest.raises(httpx.RemoteProtocolError):
            await fetch(server, transport)

    serve(huge, scenario)


def test_a_silent_server_times_out_reading() -> None:
    async def silent(server: Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    async def scenario(server: Server, transport: PinnedTransport) -> None:
        request = httpx.Request(
            "GET", f"http://127.0.0.1:{server.port}/", extensions={"timeout": {"read": 0.2}}
        )
        with pytest.raises(httpx.ReadTimeout):
            await transport.handle_async_request(request)
        assert transport._idle == {}

    serve(silent, scenario)


def test_requests_beyond_the_connection_cap_wait_for_a_slot() -> None:
    async def scenario(server: Server, transport: PinnedTransport) -> None:
        transport._slots = asyncio.Semaphore(2)
        request = httpx.Request(
            "GET", f"http://127.0.0.1:{server.port}/", extensions={"timeout": {"pool": 0.2, "read": 5}}
        )
        held = [await transport.handle_async_request(request) for _ in range(2)]
        with pytest.raises(httpx.PoolTimeout):
            await transport.handle_async_request(request)
        await held[0].aclose()  # a slot comes free
        assert await fetch(server, transport) == b"ok"
        await held[1].aclose()

    serve(keep_alive, scenario)


def test_idle_connections_past_keep_alive_are_closed_by_the_next_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # After a burst, connections nobody takes again must not hold their buffers for good (issue 19):
    # the next request closes every idle one past the keep-alive time, not only the one it takes.
    import appliance.probes._httppool as pool

    monkeypatch.setattr(pool, "HTTP_KEEPALIVE_S", 0.3)
    monkeypatch.setattr(pool, "_SWEEP_S", 0.0)

    async def scenario(server: Server, transport: PinnedTransport) -> None:
        await asyncio.gather(*(fetch(server, transport) for _ in range(6)))
        assert transport._idle_count == 6
        await asyncio.sleep(0.4)
        # another pool key (the TLS server name is part of it): no old connection is taken directly
        request = httpx.Request(
            "GET",
            f"http://127.0.0.1:{server.port}/",
            extensions={
                "timeout": dict.fromkeys(("connect", "read", "write", "pool"), 5.0),
                "sni_hostname": "b",
            },
        )
        response = await transport.handle_async_request(request)
        await response.aread()
        await response.aclose()
        assert transport._idle_count == 1
        assert [len(c) for c in transport._idle.values()] == [1]

    assert serve(keep_alive, scenario).accepted == 7


def test_own_caps_for_the_instance_connection() -> None:
    async def scenario(server: Server, transport: PinnedTransport) -> None:
        mine = PinnedTransport(None, max_connections=3, idle_connections=2)
        try:
            await asyncio.gather(*(fetch(server, mine) for _ in range(5)))
            assert mine._idle_count == 2  # never more kept than asked
        finally:
            await mine.aclose()

    assert serve(keep_alive, scenario).accepted == 3  # never more open at once than asked
