"""A thin HTTP/1.1 transport for the HTTP probe and the queue client: h11 over asyncio streams, one
idle pool per transport.

httpx's default transport (httpcore) re-examines every pooled connection under AnyIO locks on each
request, and spends most of a small request's time there; this transport takes an idle connection
from the top of a per-address stack instead. It connects only where the request URL says, which the
probe has already set to the policy-checked address (the name goes in Host and as the TLS server
name), so it adds no path around the allowlist. Errors surface as httpx's own exception types.

The queue client uses it too, also through the instance's proxy (an HTTP CONNECT tunnel,
``_httptunnel``): httpx imports httpcore and AnyIO only when its default transport is built, so the
appliance never loads them and the binary does not carry them.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator

import h11
import httpx

from appliance.limits import HTTP_IDLE_CONNECTIONS, HTTP_KEEPALIVE_S, HTTP_MAX_CONNECTIONS
from appliance.probes._httptunnel import Proxy, open_tunnel

_READ_SIZE = 64 * 1024
_MAX_HEAD_BYTES = 100 * 1024  # a response's status line and headers, as httpcore allows
# A request that may be sent again on a fresh connection when a reused one was closed under it
# (RFC 9110 9.2.2): the server cannot have acted on it twice.
_IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"PUT", b"DELETE"})
# Address, port, TLS server name, and the proxy's URL (without user info) or None for a direct
# connection: a tunnelled connection and a direct one to the same address are never swapped.
_Key = tuple[str, int, str | None, str | None]
_NO_RESPONSE = "Server disconnected without sending a response."  # httpcore's wording
_SWEEP_S = 1.0  # how often a request may look for idle connections past their keep-alive time


class _Stale(Exception):
    """A reused connection closed before answering: the request may be tried once on a new one."""


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=_MAX_HEAD_BYTES)
        self.idle_since = 0.0
        self.reused = False

    def usable(self, now: float) -> bool:
        """Still open, nothing unasked-for waiting on it, and not idle past the keep-alive time."""
        return (
            not self.writer.transport.is_closing()
            and not self.reader.at_eof()
            and not _unread(self.reader)
            and now - self.idle_since < HTTP_KEEPALIVE_S
        )

    def close(self) -> None:
        self.writer.transport.abort()  # no graceful TLS close: nothing more is read from this peer


class PinnedTransport(httpx.AsyncBaseTransport):
    """Sends each request to exactly the address in its URL; TLS verified by ``ssl_context``.

    With ``proxy``, every connection is a CONNECT tunnel through it (TLS to an ``https://`` proxy
    verified by ``proxy_ssl``), and TLS to the address in the URL runs inside the tunnel.
    """

    def __init__(
        self,
        ssl_context: ssl.SSLContext | None,
        *,
        max_connections: int = HTTP_MAX_CONNECTIONS,
        idle_connections: int = HTTP_IDLE_CONNECTIONS,
        proxy: Proxy | None = None,
        proxy_ssl: ssl.SSLContext | None = None,
    ) -> None:
        if proxy is not None and proxy.scheme == "https" and proxy_ssl is None:
            raise ValueError("an https:// proxy needs a TLS context")
        self._ssl = ssl_context
        self._proxy = proxy
        self._proxy_ssl = proxy_ssl
        self._route = proxy.shown if proxy is not None else None
        self._idle: dict[_Key, list[_Connection]] = {}
        self._idle_count = 0
        self._idle_cap = idle_connections
        self._swept = time.monotonic()
        self._slots = asyncio.Semaphore(max_connections)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeouts = request.extensions.get("timeout", {})
        sni = request.extensions.get("sni_hostname")
        key: _Key = (
            request.url.host,
            request.url.port or _default_port(request.url.scheme),
            sni,
            self._route,
        )
        if self._slots.locked():  # a timer only when there is something to wait for
            try:
                async with asyncio.timeout(timeouts.get("pool")):
                    await self._slots.acquire()
            except TimeoutError as e:
                raise httpx.PoolTimeout("no free connection slot", request=request) from e
        else:
            await self._slots.acquire()
        try:
            conn = self._checkout(key)
            if conn is not None:
                try:
                    return await self._exchange(conn, request, key, timeouts)
                except _Stale:
                    pass
            conn = await self._connect(request, key, timeouts)
            try:
                return await self._exchange(conn, request, key, timeouts)
            except _Stale as e:
                raise httpx.RemoteProtocolError(_NO_RESPONSE, request=request) from e
        except BaseException:
            self._slots.release()
            raise

    async def aclose(self) -> None:
        self.close_idle()

    def close_idle(self) -> None:
        """Close every pooled connection; connections in use close when their response is done."""
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
        self._idle.clear()
        self._idle_count = 0

    def _checkout(self, key: _Key) -> _Connection | None:
        now = time.monotonic()
        if now - self._swept >= _SWEEP_S:
            self._expire(now)
        conns = self._idle.get(key)
        while conns:
            conn = conns.pop()
            self._idle_count -= 1
            if conn.usable(now):
                if not conns:
                    del self._idle[key]
                return conn
            conn.close()
        self._idle.pop(key, None)
        return None

    def _checkin(self, key: _Key, conn: _Connection) -> None:
        self._slots.release()
        if (
            conn.h11.our_state is not h11.DONE
            or conn.h11.their_state is not h11.DONE
            or conn.h11.trailing_data[0]  # more than the answer arrived: the stream is out of step
        ):
            conn.close()
            return
        try:
            conn.h11.start_next_cycle()
        except h11.LocalProtocolError:
            conn.close()
            return
        if self._idle_count >= self._idle_cap:
            self._evict_oldest()
        conn.idle_since = time.monotonic()
        conn.reused = True
        self._idle.setdefault(key, []).append(conn)
        self._idle_count += 1

    def _expire(self, now: float) -> None:
        # Idle connections past the keep-alive time are closed here, not only when next taken: after a
        # burst, those nobody asks for again would otherwise hold their TLS buffers for good.
        self._swept = now
        for key in list(self._idle):
            conns = self._idle[key]
            while conns and now - conns[0].idle_since >= HTTP_KEEPALIVE_S:  # oldest first
                conns.pop(0).close()
                self._idle_count -= 1
            if not conns:
                del self._idle[key]

    def _evict_oldest(self) -> None:
        key, conns = min(self._idle.items(), key=lambda kv: kv[1][0].idle_since)
        conns.pop(0).close()
        self._idle_count -= 1
        if not conns:
            del self._idle[key]

    async def _connect(
        self, request: httpx.Request, key: _Key, timeouts: dict[str, float | None]
    ) -> _Connection:
        host, port, sni, _ = key
        tls = request.url.scheme == "https"
        if tls and self._ssl is None:
            raise httpx.ConnectError("an https request needs a TLS context", request=request)
        if self._proxy is not None:
            return await self._tunnel(self._proxy, self._ssl if tls else None, request, key, timeouts)
        try:
            async with asyncio.timeout(timeouts.get("connect")):
                reader, writer = await asyncio.open_connection(
                    host,
                    port,
                    ssl=self._ssl if tls else None,
                    server_hostname=(sni or host) if tls else None,
                    limit=_READ_SIZE,
                )
        except TimeoutError as e:
            raise httpx.ConnectTimeout("timed out while connecting", request=request) from e
        except (OSError, ssl.SSLError) as e:
            raise httpx.ConnectError(str(e) or type(e).__name__, request=request) from e
        return _Connection(reader, writer)

    async def _tunnel(
        self,
        proxy: Proxy,
        tls: ssl.SSLContext | None,
        request: httpx.Request,
        key: _Key,
        timeouts: dict[str, float | None],
    ) -> _Connection:
        host, port, sni, _ = key
        reader, writer = await open_tunnel(
            proxy, self._proxy_ssl, (host, port), request, timeouts, limit=_READ_SIZE
        )
        if tls is not None:
            # TLS to the instance inside the tunnel (over TLS to the proxy for an https:// proxy):
            # StreamWriter.start_tls layers it on whatever transport the stream already has.
            try:
                async with asyncio.timeout(timeouts.get("connect")):
                    await writer.start_tls(tls, server_hostname=sni or host)
            except BaseException as e:
                writer.transport.abort()
                if isinstance(e, TimeoutError):
                    raise httpx.ConnectTimeout("timed out while connecting", request=request) from e
                if isinstance(e, (OSError, ssl.SSLError)):
                    raise httpx.ConnectError(str(e) or type(e).__name__, request=request) from e
                raise
        return _Connection(reader, writer)

    async def _exchange(
        self, conn: _Connection, request: httpx.Request, key: _Key, timeouts: dict[str, float | None]
    ) -> httpx.Response:
        retry = conn.reused and request.method.encode() in _IDEMPOTENT
        try:
            await self._send(conn, request, timeouts.get("write"))
            response = await self._receive_head(conn, request, timeouts.get("read"), retry)
        except BaseException:
            conn.close()
            raise
        return httpx.Response(
            response.status_code,
            headers=response.headers.raw_items(),
            stream=_Body(self, conn, key, request, timeouts.get("read")),
            extensions={"http_version": b"HTTP/" + response.http_version, "reason_phrase": response.reason},
        )

    async def _send(self, conn: _Connection, request: httpx.Request, timeout: float | None) -> None:
        url = request.url
        target = url.raw_path
        head = h11.Request(method=request.method, target=target, headers=request.headers.raw)
        try:
            data = conn.h11.send(head) or b""
            async for chunk in request.stream:  # type: ignore[union-attr]
                data += conn.h11.send(h11.Data(data=chunk)) or b""
            data += conn.h11.send(h11.EndOfMessage()) or b""
        except h11.LocalProtocolError as e:
            raise httpx.LocalProtocolError(str(e), request=request) from e
        try:
            async with asyncio.timeout(timeout):
                conn.writer.write(data)
                await conn.writer.drain()
        except TimeoutError as e:
            raise httpx.WriteTimeout("timed out while sending the request", request=request) from e
        except OSError as e:
            raise httpx.WriteError(str(e) or type(e).__name__, request=request) from e

    async def _receive_head(
        self, conn: _Connection, request: httpx.Request, timeout: float | None, retry: bool
    ) -> h11.Response:
        received = False
        while True:
            event = await _next_event(conn, request, timeout, stale_ok=retry and not received)
            if isinstance(event, h11.InformationalResponse):
                received = True
                continue
            if isinstance(event, h11.Response):
                return event
            raise httpx.RemoteProtocolError(f"unexpected {type(event).__name__}", request=request)

    def release(self, key: _Key, conn: _Connection, reusable: bool) -> None:
        if reusable:
            self._checkin(key, conn)
        else:
            self._slots.release()
            conn.close()


async def _next_event(
    conn: _Connection, request: httpx.Request, timeout: float | None, *, stale_ok: bool = False
) -> h11.Event | type[h11.NEED_DATA] | type[h11.PAUSED]:
    while True:
        try:
            event = conn.h11.next_event()
        except h11.RemoteProtocolError as e:
            raise httpx.RemoteProtocolError(str(e), request=request) from e
        if event is not h11.NEED_DATA:
            return event
        try:
            async with asyncio.timeout(timeout):
                data = await conn.reader.read(_READ_SIZE)
        except TimeoutError as e:
            raise httpx.ReadTimeout("timed out while reading the response", request=request) from e
        except OSError as e:
            if stale_ok:
                raise _Stale from e
            raise httpx.ReadError(str(e) or type(e).__name__, request=request) from e
        if not data and stale_ok and conn.h11.their_state is h11.SEND_RESPONSE:
            raise _Stale
        if not data and conn.h11.their_state is h11.SEND_RESPONSE:
            raise httpx.RemoteProtocolError(_NO_RESPONSE, request=request)
        conn.h11.receive_data(data)


class _Body(httpx.AsyncByteStream):
    """A response body read straight off the connection; the connection is pooled again once complete."""

    def __init__(
        self,
        pool: PinnedTransport,
        conn: _Connection,
        key: _Key,
        request: httpx.Request,
        timeout: float | None,
    ) -> None:
        self._pool = pool
        self._conn = conn
        self._key = key
        self._request = request
        self._timeout = timeout
        self._done = False
        self._closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while not self._done:
            try:
                event = await _next_event(self._conn, self._request, self._timeout)
            except BaseException:
                await self.aclose()
                raise
            if isinstance(event, h11.Data):
                yield bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                self._done = True
            else:
                await self.aclose()
                raise httpx.RemoteProtocolError(f"unexpected {type(event).__name__}", request=self._request)

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            self._pool.release(self._key, self._conn, self._done)


def _unread(reader: asyncio.StreamReader) -> bool:
    """Bytes arrived on an idle connection: they would be read as the next answer, so it is out of step.

    StreamReader has no public peek; its buffer is the only place to look without consuming.
    """
    return bool(getattr(reader, "_buffer", b""))


def _default_port(scheme: str) -> int:
    return 443 if scheme == "https" else 80
