"""An HTTP CONNECT tunnel through the instance's proxy, for PinnedTransport (RFC 9110 9.3.6).

What httpx's own transport (httpcore) did with ``proxy=`` is kept: TCP to the proxy, TLS to it first
for an ``https://`` proxy, ``CONNECT host:port`` with ``Host`` and ``Accept``, a Basic
``Proxy-Authorization`` from the URL's user info, a non-2xx answer raised as ``httpx.ProxyError``
naming its status, then TLS to the instance inside the tunnel. One difference: httpcore verified an
``https://`` proxy against the system trust plus certifi's bundle, which the frozen binary does not
carry (build/midbox.spec drops it), so this verifies it against the system trust only.

The proxy's password lives only in ``Proxy.authorization`` (kept out of ``repr``) and in the bytes
sent to the proxy: what is shown, logged or raised names the proxy by ``Proxy.shown``.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

import h11
import httpx

from appliance.limits import PROXY_ANSWER_BYTES

_READ_SIZE = 4096  # the answer is a status line and a few headers


@dataclass(frozen=True)
class Proxy:
    """Where the tunnel starts. ``authorization`` is a secret: never shown, never in repr."""

    scheme: str  # "http" or "https": how the appliance talks to the proxy itself
    host: str
    port: int
    authorization: bytes | None = field(default=None, repr=False)

    @property
    def shown(self) -> str:
        """The proxy as messages name it: without user info."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


def proxy_from_url(url: str) -> Proxy:
    """The proxy of an ``http://`` or ``https://`` URL (the config has checked its form)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("instance.proxy must be an http:// or https:// URL with a host")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    authorization = None
    if parts.username is not None or parts.password is not None:
        # As httpx: percent-escapes in the user info are undone, then "user:password" in Basic.
        userpass = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
        authorization = b"Basic " + base64.b64encode(userpass.encode("utf-8"))
    return Proxy(parts.scheme, parts.hostname, port, authorization)


def proxy_context() -> ssl.SSLContext:
    """TLS to an ``https://`` proxy: the system trust, host name checked (see the module doc)."""
    return ssl.create_default_context()


async def open_tunnel(
    proxy: Proxy,
    proxy_tls: ssl.SSLContext | None,
    target: tuple[str, int],
    request: httpx.Request,
    timeouts: dict[str, float | None],
    *,
    limit: int,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A stream to ``target`` through ``proxy``, not yet TLS to the target. Timeouts as httpcore's:
    the connection to the proxy under ``connect``, the CONNECT request under ``write`` and ``read``."""
    # 1. TCP to the proxy, and TLS to it for an https:// proxy.
    tls = proxy.scheme == "https"
    try:
        async with asyncio.timeout(timeouts.get("connect")):
            reader, writer = await asyncio.open_connection(
                proxy.host,
                proxy.port,
                ssl=proxy_tls if tls else None,
                server_hostname=proxy.host if tls else None,
                limit=limit,
            )
    except TimeoutError as e:
        raise httpx.ConnectTimeout(
            f"timed out while connecting to the proxy {proxy.shown}", request=request
        ) from e
    except ssl.SSLError as e:
        # A ProxyError, not the ConnectError httpcore raised: the certificate at fault is the proxy's,
        # and the operator should not be sent to the instance's CA file.
        raise httpx.ProxyError(
            f"TLS to the proxy {proxy.shown} failed ({_reason(e)[:160]}); its certificate must verify "
            "against this host's system trust under the proxy's host name",
            request=request,
        ) from e
    except OSError as e:
        raise httpx.ConnectError(f"the proxy {proxy.shown}: {_reason(e)}", request=request) from e
    try:
        # 2. CONNECT, then 3. the proxy's answer: a 2xx opens the tunnel, anything else ends here.
        parser, head = _connect_request(proxy, target)
        await _send_connect(writer, head, proxy, request, timeouts.get("write"))
        await _read_answer(reader, parser, proxy, request, timeouts.get("read"))
    except BaseException:
        writer.transport.abort()
        raise
    return reader, writer


def _connect_request(proxy: Proxy, target: tuple[str, int]) -> tuple[h11.Connection, bytes]:
    host, port = target
    authority = (f"[{host}]:{port}" if ":" in host else f"{host}:{port}").encode("ascii")
    headers = [(b"Host", authority), (b"Accept", b"*/*")]
    if proxy.authorization is not None:
        headers.append((b"Proxy-Authorization", proxy.authorization))
    conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=PROXY_ANSWER_BYTES)
    head = conn.send(h11.Request(method=b"CONNECT", target=authority, headers=headers)) or b""
    head += conn.send(h11.EndOfMessage()) or b""
    return conn, head


async def _send_connect(
    writer: asyncio.StreamWriter, head: bytes, proxy: Proxy, request: httpx.Request, timeout: float | None
) -> None:
    try:
        async with asyncio.timeout(timeout):
            writer.write(head)
            await writer.drain()
    except TimeoutError as e:
        raise httpx.WriteTimeout(f"timed out while asking the proxy {proxy.shown}", request=request) from e
    except OSError as e:
        raise httpx.WriteError(f"the proxy {proxy.shown}: {_reason(e)}", request=request) from e


async def _read_answer(
    reader: asyncio.StreamReader,
    parser: h11.Connection,
    proxy: Proxy,
    request: httpx.Request,
    timeout: float | None,
) -> None:
    received = 0
    while True:
        try:
            event = parser.next_event()
        except h11.RemoteProtocolError as e:
            raise httpx.ProxyError(
                f"the proxy {proxy.shown} sent a malformed answer to CONNECT ({e})", request=request
            ) from e
        if isinstance(event, h11.InformationalResponse):
            continue
        if isinstance(event, h11.Response):
            break
        if event is not h11.NEED_DATA:
            raise httpx.ProxyError(f"the proxy {proxy.shown} sent an unexpected answer", request=request)
        try:
            async with asyncio.timeout(timeout):
                data = await reader.read(_READ_SIZE)
        except TimeoutError as e:
            raise httpx.ReadTimeout(
                f"the proxy {proxy.shown} did not answer CONNECT in time", request=request
            ) from e
        except OSError as e:
            raise httpx.ReadError(f"the proxy {proxy.shown}: {_reason(e)}", request=request) from e
        if not data:
            raise httpx.ProxyError(
                f"the proxy {proxy.shown} closed the connection without answering CONNECT", request=request
            )
        # The cap holds for the whole answer: a proxy sending 1xx heads without end is refused too.
        received += len(data)
        if received > PROXY_ANSWER_BYTES:
            raise httpx.ProxyError(
                f"the proxy {proxy.shown} sent more than {PROXY_ANSWER_BYTES} bytes, no CONNECT answer",
                request=request,
            )
        parser.receive_data(data)
    if not 200 <= event.status_code <= 299:
        reason = event.reason.decode("ascii", errors="replace")[:100]
        # httpcore's wording ("407 Proxy Authentication Required"), so messages read as before.
        raise httpx.ProxyError(f"{event.status_code} {reason}".strip(), request=request)
    if parser.trailing_data[0]:
        # TLS to the instance starts from this side: a proxy that speaks first is out of step.
        raise httpx.ProxyError(
            f"the proxy {proxy.shown} sent data after its CONNECT answer, before TLS", request=request
        )


def _reason(e: BaseException) -> str:
    return str(e) or type(e).__name__
