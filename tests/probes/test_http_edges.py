"""The HTTP probe's remaining decisions, each against a real loopback server: the credential a rule
allows, proxies from the environment ignored, default ports checked, which answers are redirects,
how a redirect carries the method, the hop limit, the timeout, header checks at their exact edges,
and the credential kinds.

Written against the mutants of ``appliance/probes/http.py`` that survived the HTTP tests
(``python -m tests.mutation --only http``).
"""

from __future__ import annotations

import asyncio
import gzip
import http.server
import ipaddress
import socket
import ssl
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from appliance.errors import PayloadError, ProbeError, TargetDeniedError
from appliance.limits import Limits
from appliance.probes._httpbody import ACCEPT_ENCODING
from appliance.probes.base import ProbeContext
from appliance.probes.http import MAX_REDIRECTS, MAX_TLS_CLIENTS, HttpProbe
from devinstance import pki
from hardening.policy import AllowRule, Policy, PortRange
from tests.probes.conftest import (
    FixedDns,
    MemCredential,
    MemCredentials,
    ProbeAudit,
    http_body,
    http_fetch,
    listening,
    make_ctx,
    make_job,
)
from tests.support.https_target import https_target
from tests.support.https_target import rule as tls_rule


def store() -> MemCredentials:
    return MemCredentials(
        MemCredential("web", "http-basic", "user", (b"password",)),
        MemCredential("anon", "http-basic", None, (b"pw",)),
        MemCredential("token", "http-bearer", None, (b"t0k3n",)),
        MemCredential("shell", "ssh-password", "root", (b"x",)),
    )


class Echo(http.server.BaseHTTPRequestHandler):
    """Answers with what it received; /hop/N redirects N times; /307 and /302 redirect to /echo;
    /located is a 200 that carries a Location header; /hang never answers in time."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def _answer(self, status: int, body: bytes, location: str | None = None) -> None:
        self.send_response(status)
        if location:
            self.send_header("Location", location)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _handle(self) -> None:
        sent = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        path = self.path
        if path.startswith("/hop/"):
            left = int(path.rsplit("/", 1)[1])
            self._answer(302, b"", f"/hop/{left - 1}" if left else None) if left else self._answer(
                200, b"done"
            )
        elif path in ("/307", "/308", "/302"):
            self._answer(int(path[1:]), b"", "/echo")
        elif path == "/bad-name":
            self._answer(302, b"", "http://xn--/")  # an IDNA label that does not decode
        elif path == "/to-https":
            self._answer(302, b"", "https://127.0.0.1:1/")
        elif path == "/gzip":
            packed = gzip.compress(b"compressed hello")
            self.send_response(200)
            self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Length", str(len(packed)))
            self.end_headers()
            self.wfile.write(packed)
        elif path == "/located":
            self._answer(200, b"here", "/elsewhere")
        elif path == "/hang":
            time.sleep(2)
            self._answer(200, b"late")
        else:
            headers = {k.lower(): v for k, v in self.headers.items()}
            echo = (
                f"{self.command} {sent.decode()!r} auth={headers.get('authorization')} "
                f"host={headers.get('host')} ae={headers.get('accept-encoding')} x={headers.get('x-probe')}"
            )
            self._answer(200, echo.encode())

    do_GET = do_POST = do_PUT = do_HEAD = _handle


@contextmanager
def server() -> Iterator[int]:
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    srv.daemon_threads = True
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield srv.server_address[1]
    finally:
        srv.shutdown()
        srv.server_close()


def allow(*ports: int, creds: tuple[str, ...] = ("web", "anon", "token", "shell")) -> AllowRule:
    return AllowRule(
        networks=(ipaddress.ip_network("127.0.0.1/32"),),
        hosts=(),
        probes=frozenset({"http"}),
        ports=tuple(PortRange(p, p) for p in ports),
        credentials=creds,
    )


def ctx_for(
    tmp_path: Path, *ports: int, creds: tuple[str, ...] = ("web", "anon", "token", "shell")
) -> ProbeContext:
    return make_ctx(Policy([allow(*ports, creds=creds)]), store(), tmp_path)


def test_a_credential_the_rule_does_not_allow_is_refused_before_it_is_read(tmp_path: Path) -> None:
    with server() as port:
        ctx = ctx_for(tmp_path, port, creds=("web",))
        with pytest.raises(TargetDeniedError, match="does not allow credential 'token'"):
            http_fetch(ctx, f"http://127.0.0.1:{port}/echo", credential="token")
    assert ctx.credentials.lookups == []  # type: ignore[attr-defined]


@pytest.mark.parametrize("variable", ["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"])
def test_a_proxy_named_by_the_environment_is_never_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    with server() as port, listening("127.0.0.1", socket.SOCK_STREAM) as proxy:
        monkeypatch.setenv(variable, f"http://127.0.0.1:{proxy.port}")
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        result = http_fetch(ctx_for(tmp_path, port), f"http://127.0.0.1:{port}/echo")
        time.sleep(0.1)
        assert proxy.hits() == []
    assert http_body(result).startswith("GET ")


def test_an_https_proxy_named_by_the_environment_is_never_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with https_target(tmp_path / "pki") as (port, ca), listening("127.0.0.1", socket.SOCK_STREAM) as proxy:
        for variable in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY"):
            monkeypatch.setenv(variable, f"http://127.0.0.1:{proxy.port}")
        ctx = make_ctx(Policy([tls_rule(port, ca)]), MemCredentials(), tmp_path)
        result = http_fetch(ctx, f"https://127.0.0.1:{port}/")
        time.sleep(0.1)
        assert proxy.hits() == []
    assert result.get("status") == "200"


def test_tls_clients_are_reused_per_name_and_bounded(tmp_path: Path) -> None:
    probe = HttpProbe()
    first = probe._client("https", "h0", None)
    assert probe._client("https", "h0", None) is first
    for i in range(1, MAX_TLS_CLIENTS + 5):
        probe._client("https", f"h{i}", None)
        assert len(probe._tls) <= MAX_TLS_CLIENTS
    assert ("h0", None) not in probe._tls  # the oldest went first
    assert (f"h{MAX_TLS_CLIENTS + 4}", None) in probe._tls
    asyncio.run(probe.aclose())


@pytest.mark.parametrize(("scheme", "port"), [("http", 80), ("https", 443)])
def test_a_url_without_a_port_is_checked_against_its_schemes_port(
    tmp_path: Path, scheme: str, port: int
) -> None:
    ctx = ctx_for(tmp_path, 1)
    with pytest.raises(TargetDeniedError, match=f"port {port} denied"):
        http_fetch(ctx, f"{scheme}://127.0.0.1/")
    assert isinstance(ctx.audit, ProbeAudit)
    [entry] = [f for e, f in ctx.audit.events if e == "target.denied"]
    assert entry["port"] == port


def test_a_location_header_on_an_ordinary_answer_is_not_followed(tmp_path: Path) -> None:
    with server() as port:
        result = http_fetch(ctx_for(tmp_path, port), f"http://127.0.0.1:{port}/located")
    assert (result.get("status"), http_body(result)) == ("200", "here")


def test_a_redirect_to_a_name_that_does_not_decode_is_a_bad_location(tmp_path: Path) -> None:
    with server() as port, pytest.raises(ProbeError, match=r"invalid redirect Location \(\w+\); fix"):
        http_fetch(ctx_for(tmp_path, port), f"http://127.0.0.1:{port}/bad-name")


def test_a_307_keeps_the_method_and_body_and_a_302_becomes_a_get(tmp_path: Path) -> None:
    with server() as port:
        ctx = ctx_for(tmp_path, port)
        kept = http_fetch(ctx, f"http://127.0.0.1:{port}/307", http_method="post", body="payload")
        changed = http_fetch(ctx, f"http://127.0.0.1:{port}/302", http_method="PUT", body="payload")
        head = http_fetch(ctx, f"http://127.0.0.1:{port}/302", http_method="HEAD")
    assert http_body(kept).startswith("POST 'payload' ")
    assert http_body(changed).startswith("GET '' ")
    assert head.get("status") == "200" and http_body(head) == ""


def test_redirects_are_followed_up_to_the_limit_and_no_further(tmp_path: Path) -> None:
    with server() as port:
        ctx = ctx_for(tmp_path, port)
        assert http_body(http_fetch(ctx, f"http://127.0.0.1:{port}/hop/{MAX_REDIRECTS}")) == "done"
        with pytest.raises(ProbeError, match=f"^more than {MAX_REDIRECTS} redirects$"):
            http_fetch(ctx, f"http://127.0.0.1:{port}/hop/{MAX_REDIRECTS + 1}")


def test_the_jobs_timeout_is_honoured_in_milliseconds(tmp_path: Path) -> None:
    with server() as port:
        ctx = ctx_for(tmp_path, port)
        started = time.monotonic()
        with pytest.raises(ProbeError, match=r"timed out after 0\.3 s$"):
            http_fetch(ctx, f"http://127.0.0.1:{port}/hang", timeout_ms="300")
        assert time.monotonic() - started < 1.9  # the server answers after 2 s
        with pytest.raises(ProbeError, match=r"timed out after 0\.001 s$"):
            http_fetch(ctx, f"http://127.0.0.1:{port}/hang", timeout_ms="1")
        for bad in ("0", "600001"):
            with pytest.raises(PayloadError, match="'timeout_ms' must be between 1 and 600000"):
                http_fetch(ctx, f"http://127.0.0.1:{port}/echo", timeout_ms=bad)


def test_the_default_timeout_is_the_limit_in_seconds(tmp_path: Path) -> None:
    with server() as port:
        ctx = make_ctx(Policy([allow(port)]), store(), tmp_path, Limits(http_timeout_s=1.0))
        with pytest.raises(ProbeError, match=r"timed out after 1 s$"):
            http_fetch(ctx, f"http://127.0.0.1:{port}/hang")


@pytest.mark.parametrize(
    ("alias", "authorization"),
    [("web", "Basic dXNlcjpwYXNzd29yZA=="), ("anon", "Basic OnB3"), ("token", "Bearer t0k3n")],
)
def test_each_http_credential_kind_is_sent_as_its_scheme(
    tmp_path: Path, alias: str, authorization: str
) -> None:
    with server() as port:
        ctx = ctx_for(tmp_path, port)
        result = http_fetch(ctx, f"http://127.0.0.1:{port}/echo", credential=alias)
    assert f"auth={authorization} " in http_body(result)
    assert isinstance(ctx.audit, ProbeAudit)
    [used] = [f for e, f in ctx.audit.events if e == "credential.used"]
    assert (used["alias"], used["target"]) == (alias, "127.0.0.1")


def test_a_credential_of_another_kind_is_refused_naming_the_kinds_allowed(tmp_path: Path) -> None:
    with server() as port:
        with pytest.raises(
            ProbeError,
            match="^credential 'shell' is of type 'ssh-password'; the HTTP probe needs http-basic or http-bearer$",
        ):
            http_fetch(ctx_for(tmp_path, port), f"http://127.0.0.1:{port}/echo", credential="shell")


def test_the_request_carries_the_host_and_the_bounded_encodings(tmp_path: Path) -> None:
    with server() as port:
        ctx = ctx_for(tmp_path, port)
        plain = http_body(http_fetch(ctx, f"http://127.0.0.1:{port}/echo"))
        own = http_body(
            http_fetch(ctx, f"http://127.0.0.1:{port}/echo", headers='{"Accept-Encoding": "identity"}')
        )
    assert f"host=127.0.0.1:{port} " in plain and f"ae={ACCEPT_ENCODING} " in plain
    assert "ae=identity " in own
    assert plain.startswith("GET '' ")


@pytest.mark.parametrize(
    "headers",
    ['{"X-Probe": "! ~\\tend"}', '{"!": "x"}', '{"~": ""}'],
    ids=["value-edges", "name-0x21", "name-0x7e"],
)
def test_printable_ascii_headers_at_the_edges_are_sent(tmp_path: Path, headers: str) -> None:
    with server() as port:
        result = http_fetch(ctx_for(tmp_path, port), f"http://127.0.0.1:{port}/echo", headers=headers)
    assert result.get("status") == "200"


@pytest.mark.parametrize(
    "headers",
    [
        '{"X Probe": "x"}',
        '{"": "x"}',
        '{"X-Probe": "a\\u007fb"}',
        '{"X-Probe": "caf\\u00e9"}',
        '{"X-Probe": "a\\u0000"}',
    ],
    ids=["space-in-name", "empty-name", "del-in-value", "non-ascii-value", "nul-in-value"],
)
def test_a_header_outside_printable_ascii_is_a_payload_error(tmp_path: Path, headers: str) -> None:
    with pytest.raises(
        PayloadError, match=r"names and values must be printable ASCII \(no line breaks\); percent-"
    ):
        http_fetch(ctx_for(tmp_path, 1), "http://127.0.0.1:1/", headers=headers)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"url": ""}, "^RESTProbe needs a 'url' parameter$"),
        ({"url": "ftp://127.0.0.1/"}, "^'url' must be an http:// or https:// URL with a host$"),
        ({"http_method": "TRACE"}, r"^'http_method' 'TRACE' is not one of \['DELETE', 'GET',"),
        ({"headers": "[1]"}, "^'headers' must be a JSON object of strings$"),
        ({"headers": "{"}, "^'headers' must be a JSON object of strings$"),
        ({"headers": '{"Authorization": "x"}'}, "^header 'Authorization' may not be set by a job$"),
    ],
    ids=["no-url", "scheme", "method", "not-object", "not-json", "reserved"],
)
def test_each_refused_request_says_why(tmp_path: Path, params: dict[str, str], message: str) -> None:
    job_params = {"url": "http://127.0.0.1:1/", **params}
    ctx = ctx_for(tmp_path, 1)
    probe = HttpProbe()
    with pytest.raises(PayloadError, match=message):
        asyncio.run(probe.run(make_job("RESTProbe", "http", "127.0.0.1", **job_params), ctx))


# --- HTTPS by name: the name is the TLS server name, and each name has its own verified client -----


@contextmanager
def https_echo(directory: Path, name: str) -> Iterator[tuple[int, Path]]:
    """Like test_http_tls.https_target, but HTTP/1.1 keep-alive: a pooled connection could be reused."""
    ca = pki.ensure_ca(directory)
    leaf = pki.issue(ca, directory, "target", name, server=True, hosts=(name,))
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    srv.daemon_threads = True
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(str(leaf.cert), str(leaf.key))
    srv.socket = tls.wrap_socket(srv.socket, server_side=True)
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield srv.server_address[1], ca.cert
    finally:
        srv.shutdown()
        srv.server_close()


def test_https_to_a_name_is_verified_for_that_name_and_not_reused_for_another(tmp_path: Path) -> None:
    dns = FixedDns()
    dns.set("a.midbox.test", "127.0.0.1")
    dns.set("b.midbox.test", "127.0.0.1")
    # One keep-alive server, one address, a certificate for a.midbox.test only.
    with https_echo(tmp_path / "pki", "a.midbox.test") as (port, ca):
        ctx = make_ctx(Policy([tls_rule(port, ca)]), MemCredentials(), tmp_path, resolver=dns)
        probe = HttpProbe()

        async def go() -> tuple[ET.Element, BaseException | None]:
            try:
                good = await probe.run(
                    make_job("RESTProbe", "a", "a", url=f"https://a.midbox.test:{port}/"), ctx
                )
                try:
                    await probe.run(
                        make_job("RESTProbe", "b", "b", url=f"https://b.midbox.test:{port}/"), ctx
                    )
                except ProbeError as e:
                    return good, e
                return good, None
            finally:
                await probe.aclose()

        good, refused = asyncio.run(go())
    assert good.get("status") == "200"
    # The connection verified for a.midbox.test must not carry a request for b.midbox.test.
    assert refused is not None and "certificate" in str(refused).lower()


def test_a_redirect_to_https_is_judged_by_the_policy_not_refused_as_a_scheme(tmp_path: Path) -> None:
    with server() as port:
        ctx = ctx_for(tmp_path, port)
        with pytest.raises(TargetDeniedError, match="port 1 denied"):
            http_fetch(ctx, f"http://127.0.0.1:{port}/to-https")


def test_a_308_keeps_the_method_and_body(tmp_path: Path) -> None:
    with server() as port:
        kept = http_fetch(
            ctx_for(tmp_path, port), f"http://127.0.0.1:{port}/308", http_method="PUT", body="b"
        )
    assert http_body(kept).startswith("PUT 'b' ")


def test_a_header_value_that_is_not_a_string_is_a_payload_error(tmp_path: Path) -> None:
    with pytest.raises(PayloadError, match="^'headers' must be a JSON object of strings$"):
        http_fetch(ctx_for(tmp_path, 1), "http://127.0.0.1:1/", headers='{"X-Probe": 1}')


def test_a_gzip_body_is_decoded(tmp_path: Path) -> None:
    with server() as port:
        result = http_fetch(ctx_for(tmp_path, port), f"http://127.0.0.1:{port}/gzip")
    assert http_body(result) == "compressed hello"


def test_the_credential_audit_names_the_target_cut_to_255_characters(tmp_path: Path) -> None:
    source = "s" * 300
    with server() as port:
        ctx = ctx_for(tmp_path, port)
        probe = HttpProbe()

        async def go() -> None:
            try:
                job = make_job(
                    "RESTProbe", "http", source, url=f"http://127.0.0.1:{port}/echo", credential="web"
                )
                await probe.run(job, ctx)
            finally:
                await probe.aclose()

        asyncio.run(go())
    assert isinstance(ctx.audit, ProbeAudit)
    [used] = [f for e, f in ctx.audit.events if e == "credential.used"]
    assert used["target"] == source[:255]
