"""The instance connection: pinned CA, host name checked, TLS 1.2+, client certificate, no environment."""

from __future__ import annotations

import asyncio
import socket
import ssl
from pathlib import Path

import pytest

from appliance.errors import InstanceError
from appliance.limits import MAX_INSTANCE_RESPONSE_BYTES
from appliance.queue.client import EccClient
from appliance.queue.transport import instance_client
from devinstance import pki
from devinstance.server import DevInstance, InstanceState
from devinstance.store import Store
from hardening.tls import TLSConfigError, client_context
from tests.helpers import NAME, Pki, config_text, dev_instance, fast_limits, trusted


def _poll(url: str, p: Pki, tmp_path: Path, *, without_client_cert: bool = False) -> None:
    config = trusted(config_text(url, p), tmp_path / "c.toml")
    instance = config.instance
    if without_client_cert:
        from dataclasses import replace

        instance = replace(instance, client_cert=None, client_key=None)

    async def go() -> None:
        client = EccClient(
            instance_client(instance, fast_limits(), name=NAME),
            name=NAME,
            max_response_bytes=MAX_INSTANCE_RESPONSE_BYTES,
        )
        try:
            await client.poll(1)
        finally:
            await client.aclose()

    asyncio.run(go())


def _serve(ctx: ssl.SSLContext, tmp_path: Path) -> DevInstance:
    return DevInstance(InstanceState(Store(tmp_path / "other.sqlite")), ctx)


def _server_ctx(cert: pki.Issued, client_ca: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert.cert), str(cert.key))
    ctx.load_verify_locations(cafile=str(client_ca))
    ctx.verify_mode = ssl.CERT_OPTIONAL
    return ctx


def test_server_from_another_ca_is_refused(dev_pki: Pki, tmp_path: Path) -> None:
    rogue_ca = pki.ensure_ca(tmp_path / "rogue", "rogue CA")
    rogue = pki.issue(rogue_ca, tmp_path / "rogue", "server", "localhost", server=True)
    with _serve(_server_ctx(rogue, dev_pki.ca.cert), tmp_path) as server:
        with pytest.raises(InstanceError, match="not trusted"):
            _poll(server.url, dev_pki, tmp_path)


def test_host_name_mismatch_is_refused(dev_pki: Pki, tmp_path: Path) -> None:
    wrong = pki.issue(dev_pki.ca, tmp_path, "wrong", "other.example", server=True, hosts=("other.example",))
    with _serve(_server_ctx(wrong, dev_pki.ca.cert), tmp_path) as server:
        with pytest.raises(InstanceError, match="not trusted"):
            _poll(server.url, dev_pki, tmp_path)


def _tls11_server_ctx(p: Pki) -> ssl.SSLContext:
    ctx = _server_ctx(p.server, p.ca.cert)
    ctx.minimum_version = ssl.TLSVersion.TLSv1
    ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    return ctx


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_server_below_tls12_is_refused(dev_pki: Pki, tmp_path: Path) -> None:
    with _serve(_tls11_server_ctx(dev_pki), tmp_path) as server:
        # Control: a client that allows TLS 1.1 gets through, so the refusal below is ours.
        lax = ssl.create_default_context(cafile=str(dev_pki.ca.cert))
        lax.minimum_version = ssl.TLSVersion.TLSv1
        lax.set_ciphers("DEFAULT:@SECLEVEL=0")
        try:
            with socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw:
                with lax.wrap_socket(raw, server_hostname="localhost") as tls:
                    assert tls.version() == "TLSv1.1"
        except ssl.SSLError as e:
            pytest.skip(f"this OpenSSL cannot speak TLS 1.1 at all ({e}); nothing to refuse")
        with pytest.raises(InstanceError, match="TLS 1.2"):
            _poll(server.url, dev_pki, tmp_path)


def test_client_context_is_tls12_plus_with_hostname_check(dev_pki: Pki) -> None:
    ctx = client_context(
        ca_file=dev_pki.ca.cert, client_cert=dev_pki.client.cert, client_key=dev_pki.client.key, name=NAME
    )
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    assert ctx.check_hostname and ctx.verify_mode == ssl.CERT_REQUIRED
    # Only the pinned CA: nothing from the system store.
    assert [c["subject"] for c in ctx.get_ca_certs()] == [
        ((("organizationName", "midbox dev"),), (("commonName", "midbox dev instance CA"),))
    ]


def test_missing_ca_file_says_what_to_fix(tmp_path: Path) -> None:
    with pytest.raises(TLSConfigError, match="instance.ca_file"):
        client_context(ca_file=tmp_path / "nope.pem", client_cert=None, client_key=None)


def test_instance_refuses_appliance_without_client_certificate(dev_pki: Pki, tmp_path: Path) -> None:
    with dev_instance(dev_pki, tmp_path / "db.sqlite") as instance:
        _poll(instance.url, dev_pki, tmp_path)  # control: with its certificate it gets in
        with pytest.raises(InstanceError):
            _poll(instance.url, dev_pki, tmp_path, without_client_cert=True)
        assert instance.state.requests == 1  # the second never got past the handshake


def test_environment_changes_nothing(dev_pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rogue_ca = pki.ensure_ca(tmp_path / "rogue", "rogue CA")
    rogue = pki.issue(rogue_ca, tmp_path / "rogue", "server", "localhost", server=True)
    dead_proxy = "http://127.0.0.1:9"  # nothing listens there: honouring it would fail every request
    for var in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(var, dead_proxy)
    monkeypatch.setenv("SSL_CERT_FILE", str(rogue_ca.cert))
    monkeypatch.setenv("SSL_CERT_DIR", str(rogue_ca.cert.parent))
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    with dev_instance(dev_pki, tmp_path / "db.sqlite") as instance:
        _poll(instance.url, dev_pki, tmp_path)
    with _serve(_server_ctx(rogue, dev_pki.ca.cert), tmp_path) as server:
        with pytest.raises(InstanceError, match="not trusted"):
            _poll(server.url, dev_pki, tmp_path)


def test_plain_http_instance_url_is_refused(dev_pki: Pki, tmp_path: Path) -> None:
    from appliance.errors import ConfigError

    with pytest.raises(ConfigError, match="https"):
        trusted(config_text("http://127.0.0.1:8080", dev_pki), tmp_path / "c.toml")


def test_refused_client_certificate_names_the_fix(dev_pki: Pki, tmp_path: Path) -> None:
    # The instance asks for a certificate from a CA ours is not from: whichever way asyncio reports
    # the close (the TLS alert, or a broken pipe before it), the message says what to check.
    other = pki.ensure_ca(tmp_path / "other", "other CA")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(dev_pki.server.cert), str(dev_pki.server.key))
    ctx.load_verify_locations(cafile=str(other.cert))
    ctx.verify_mode = ssl.CERT_REQUIRED
    with _serve(ctx, tmp_path) as server:
        for without in (False, True):
            with pytest.raises(InstanceError, match="client certificate") as got:
                _poll(server.url, dev_pki, tmp_path, without_client_cert=without)
            assert "midbox enroll" in str(got.value) or "midbox doctor" in str(got.value)


def test_instance_connection_loads_no_httpcore(dev_pki: Pki, tmp_path: Path) -> None:
    # Idle memory (issue 19): without a proxy the instance client runs on midbox's own h11
    # transport; httpcore, AnyIO and certifi cost 6 MiB of an idle appliance's RSS.
    import subprocess
    import sys

    code = (
        "import sys, asyncio\n"
        "from tests.core.test_tls import _poll\n"
        "from tests.helpers import make_pki\n"
        "from pathlib import Path\n"
        "from tests.helpers import dev_instance\n"
        f"p = make_pki(Path({str(tmp_path / 'pki')!r}))\n"
        f"with dev_instance(p, Path({str(tmp_path / 'db.sqlite')!r})) as i:\n"
        f"    _poll(i.url, p, Path({str(tmp_path)!r}))\n"
        "print(sorted(m for m in ('httpcore', 'anyio', 'certifi') if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout + done.stderr
