"""The instance through an HTTP CONNECT proxy (``instance.proxy``) on midbox's own transport: real
mTLS to the development instance inside a real tunnel of ``tests.support.connect_proxy``."""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from appliance.errors import InstanceError
from appliance.limits import MAX_INSTANCE_RESPONSE_BYTES
from appliance.probes._httppool import PinnedTransport
from appliance.probes._httptunnel import Proxy, proxy_from_url
from appliance.queue.client import EccClient
from appliance.queue.transport import instance_client
from devinstance import pki
from tests.helpers import NAME, Pki, config_text, dev_instance, fast_limits, trusted
from tests.support.connect_proxy import ConnectProxy

PASSWORD = "s3cr3t-pr0xy-pw"  # the tests look for it where it must not be


def _polls(instance_url: str, proxy_url: str, p: Pki, tmp_path: Path, n: int = 3) -> None:
    """``n`` polls of the instance through ``proxy_url``, as the runner's client makes them."""
    config = trusted(config_text(instance_url, p), tmp_path / "c.toml")
    instance = replace(config.instance, proxy=proxy_url)

    async def go() -> None:
        client = EccClient(
            instance_client(instance, fast_limits(), name=NAME),
            name=NAME,
            max_response_bytes=MAX_INSTANCE_RESPONSE_BYTES,
        )
        try:
            for _ in range(n):
                await client.poll(1)
        finally:
            await client.aclose()

    asyncio.run(go())


def _chain_text(error: BaseException) -> str:
    parts: list[str] = []
    current: BaseException | None = error
    while current is not None and len(parts) < 20:
        parts += [repr(current), str(current)]
        current = current.__cause__ or current.__context__
    return "\n".join(parts)


def test_polls_go_through_one_pooled_tunnel(dev_pki: Pki, tmp_path: Path) -> None:
    with dev_instance(dev_pki, tmp_path / "db.sqlite") as instance, ConnectProxy() as proxy:
        _polls(instance.url, proxy.url(), dev_pki, tmp_path, n=4)
        assert proxy.tunnels == 1  # kept alive and reused, as a direct connection is
        head = proxy.heads[0].decode()
        assert head.startswith(f"CONNECT 127.0.0.1:{instance.port} HTTP/1.1\r\n")
        assert f"Host: 127.0.0.1:{instance.port}" in head
        assert "Proxy-Authorization" not in head


def test_basic_auth_from_the_url_and_a_wrong_password_is_a_407(dev_pki: Pki, tmp_path: Path) -> None:
    with (
        dev_instance(dev_pki, tmp_path / "db.sqlite") as instance,
        ConnectProxy(auth=("midbox", PASSWORD)) as proxy,
    ):
        _polls(instance.url, proxy.url(f"midbox:{PASSWORD}"), dev_pki, tmp_path, n=1)
        assert proxy.tunnels == 1
        assert "Proxy-Authorization: Basic " in proxy.heads[0].decode()
        with pytest.raises(InstanceError) as got:
            _polls(instance.url, proxy.url("midbox:wrong-one"), dev_pki, tmp_path, n=1)
        assert "407 Proxy Authentication Required" in str(got.value)
        assert "check instance.proxy" in str(got.value)
        assert "wrong-one" not in _chain_text(got.value)
        assert proxy.tunnels == 1


def test_percent_escaped_user_info_is_decoded_as_httpx_did(dev_pki: Pki, tmp_path: Path) -> None:
    with (
        dev_instance(dev_pki, tmp_path / "db.sqlite") as instance,
        ConnectProxy(auth=("dom\\user", "p@ss:word")) as proxy,
    ):
        _polls(instance.url, proxy.url("dom%5Cuser:p%40ss%3Aword"), dev_pki, tmp_path, n=1)
        assert proxy.tunnels == 1


@pytest.mark.parametrize(("status", "words"), [(502, "502 Bad Gateway"), (403, "403 Forbidden")])
def test_a_refusing_proxy_is_a_proxy_error_naming_its_status(
    dev_pki: Pki, tmp_path: Path, status: int, words: str
) -> None:
    with dev_instance(dev_pki, tmp_path / "db.sqlite") as instance, ConnectProxy() as proxy:
        proxy.answer = status
        with pytest.raises(InstanceError, match=words) as got:
            _polls(instance.url, proxy.url(f"midbox:{PASSWORD}"), dev_pki, tmp_path, n=1)
        assert isinstance(got.value.__cause__, httpx.ProxyError)
        assert PASSWORD not in _chain_text(got.value)
        assert proxy.tunnels == 0 and proxy.refused == 1


def test_the_instance_certificate_is_still_checked_inside_the_tunnel(dev_pki: Pki, tmp_path: Path) -> None:
    rogue_ca = pki.ensure_ca(tmp_path / "rogue", "rogue CA")
    with dev_instance(dev_pki, tmp_path / "db.sqlite") as instance, ConnectProxy() as proxy:
        with pytest.raises(InstanceError, match="not trusted"):
            _polls(instance.url, proxy.url(), replace(dev_pki, ca=rogue_ca), tmp_path, n=1)
        assert proxy.tunnels == 1  # the tunnel opened; the instance's certificate was refused in it


def _proxy_tls(tmp_path: Path) -> tuple[ssl.SSLContext, Path]:
    """A TLS proxy whose certificate comes from a CA of its own (not the instance's)."""
    ca = pki.ensure_ca(tmp_path / "proxy-pki", "proxy CA")
    leaf = pki.issue(ca, tmp_path / "proxy-pki", "proxy", "127.0.0.1", server=True)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(leaf.cert), str(leaf.key))
    return ctx, ca.cert


def test_an_https_proxy_is_verified_by_the_system_trust_and_carries_tls_in_tls(
    dev_pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tls, proxy_ca = _proxy_tls(tmp_path)
    with (
        dev_instance(dev_pki, tmp_path / "db.sqlite") as instance,
        ConnectProxy(tls=tls, auth=("midbox", PASSWORD)) as proxy,
    ):
        url = proxy.url(f"midbox:{PASSWORD}")
        assert url.startswith("https://")
        # Not in the system trust: refused, and the message names the proxy's certificate.
        monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "empty.pem"))
        (tmp_path / "empty.pem").write_text("")
        with pytest.raises(InstanceError, match="system trust") as got:
            _polls(instance.url, url, dev_pki, tmp_path, n=1)
        assert PASSWORD not in _chain_text(got.value) and proxy.tunnels == 0
        # OpenSSL's system trust takes SSL_CERT_FILE: the proxy's CA is now in it.
        monkeypatch.setenv("SSL_CERT_FILE", str(proxy_ca))
        _polls(instance.url, url, dev_pki, tmp_path, n=3)
        assert proxy.tunnels == 1


def test_proxy_url_keeps_the_password_out_of_what_is_shown() -> None:
    proxy = proxy_from_url(f"http://midbox:{PASSWORD}@proxy.corp:3128")
    assert proxy.shown == "http://proxy.corp:3128"
    assert PASSWORD not in repr(proxy) and PASSWORD not in proxy.shown
    assert proxy_from_url("https://[::1]").shown == "https://[::1]:443"
    assert proxy_from_url("http://p").port == 80


def test_a_proxy_that_speaks_before_tls_or_sends_an_endless_head_is_refused(tmp_path: Path) -> None:
    import socket
    import threading

    def serve(answer: bytes) -> int:
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)

        def run() -> None:
            conn, _ = listener.accept()
            with conn, listener:
                conn.settimeout(5)
                conn.recv(4096)
                try:
                    conn.sendall(answer)
                    conn.recv(1)
                except OSError:
                    pass

        threading.Thread(target=run, daemon=True).start()
        return int(listener.getsockname()[1])

    async def fetch(port: int) -> None:
        transport = PinnedTransport(ssl.create_default_context(), proxy=Proxy("http", "127.0.0.1", port))
        async with httpx.AsyncClient(transport=transport) as client:
            await client.get("https://127.0.0.1:9/", timeout=5)

    early = serve(b"HTTP/1.1 200 OK\r\n\r\n\x16\x03\x01hello")
    with pytest.raises(httpx.ProxyError, match="before TLS"):
        asyncio.run(fetch(early))
    endless = serve(b"HTTP/1.1 200 OK\r\n" + b"X-Pad: " + b"a" * 40_000 + b"\r\n\r\n")
    with pytest.raises(httpx.ProxyError, match="malformed|more than"):
        asyncio.run(fetch(endless))
    informational = serve(b"HTTP/1.1 100 Continue\r\n\r\n" * 3000)
    with pytest.raises(httpx.ProxyError, match="more than"):
        asyncio.run(fetch(informational))
