"""The HTTP probe against real loopback servers: redirects re-checked hop by hop, credentials kept to
their origin, the checked address connected to (never the name again), the body cap, refused URLs and
headers. Names resolve through a DNS the test controls (the ProbeContext resolver seam)."""

from __future__ import annotations

import dataclasses
import ipaddress
import socket
import threading
from pathlib import Path

import pytest

from appliance.errors import PayloadError, TargetDeniedError
from appliance.limits import Limits
from appliance.probes.base import ProbeContext
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
)
from tests.support.http_target import Seen, _RecordingHandler, _RecordingServer, target

BASIC = "Basic dXNlcjpwYXNzd29yZA=="  # user:password, the "web" credential below


def rule(*ports: int, creds: tuple[str, ...] = ("web",)) -> AllowRule:
    return AllowRule(
        networks=(ipaddress.ip_network("127.0.0.1/32"),),
        hosts=(),
        probes=frozenset({"http"}),
        ports=tuple(PortRange(p, p) for p in ports),
        credentials=creds,
    )


def ctx_for(
    tmp_path: Path, *ports: int, dns: FixedDns | None = None, limits: Limits | None = None
) -> ProbeContext:
    creds = MemCredentials(MemCredential("web", "http-basic", "user", (b"password",)))
    if dns is None:
        return make_ctx(Policy([rule(*ports)]), creds, tmp_path, limits)
    return make_ctx(Policy([rule(*ports)]), creds, tmp_path, limits, resolver=dns)


def denied(ctx: ProbeContext) -> list[dict[str, object]]:
    assert isinstance(ctx.audit, ProbeAudit)
    return [fields for event, fields in ctx.audit.events if event == "target.denied"]


# --- redirects are re-resolved and re-checked hop by hop ----------------------------------------


def test_a_redirect_to_a_port_no_rule_allows_is_refused_before_connecting(tmp_path: Path) -> None:
    with target() as allowed, listening("127.0.0.1", socket.SOCK_STREAM) as other:
        ctx = ctx_for(tmp_path, allowed.port)
        with pytest.raises(TargetDeniedError, match=f"port {other.port} denied"):
            http_fetch(ctx, f"{allowed.url}/redirect?to=http://127.0.0.1:{other.port}/hello")
        assert [p for p, _ in allowed.seen.requests] == [f"/redirect?to=http://127.0.0.1:{other.port}/hello"]
        assert other.hits() == []
        [entry] = denied(ctx)
        assert entry["port"] == other.port and entry["address"] == "127.0.0.1"


def test_a_redirect_to_a_listener_no_rule_allows_sees_no_connection(tmp_path: Path) -> None:
    # The second hop goes to another HTTP server; the first (allowed) hop is followed, the second
    # never reaches it, and a later hop after an allowed one is checked just the same.
    with target() as allowed, target() as unlisted:
        ctx = ctx_for(tmp_path, allowed.port)
        to_unlisted = f"{unlisted.url}/hello"
        with pytest.raises(TargetDeniedError):
            http_fetch(ctx, f"{allowed.url}/redirect?to=/redirect?to={to_unlisted}")
        assert len(allowed.seen.requests) == 2  # both hops on the allowed server were made
        assert unlisted.seen.connections == 0 and unlisted.seen.requests == []
        assert [e["port"] for e in denied(ctx)] == [unlisted.port]


def test_a_redirect_to_a_name_resolving_outside_the_rules_is_refused(tmp_path: Path, dns: FixedDns) -> None:
    dns.set("moved.midbox.test", "169.254.169.254")
    with target() as allowed:
        ctx = ctx_for(tmp_path, allowed.port, dns=dns)
        with pytest.raises(TargetDeniedError):
            http_fetch(ctx, f"{allowed.url}/redirect?to=http://moved.midbox.test:{allowed.port}/hello")
        assert dns.asked == ["moved.midbox.test"]  # resolved again at the hop, not reused
        assert [e["address"] for e in denied(ctx)] == ["169.254.169.254"]
        assert len(allowed.seen.requests) == 1


# --- credentials never follow a redirect to another origin --------------------------------------


def test_credentials_are_kept_on_a_same_origin_redirect(tmp_path: Path) -> None:
    with target() as t:
        result = http_fetch(ctx_for(tmp_path, t.port), f"{t.url}/redirect?to=/echo", credential="web")
        assert result.get("status") == "200"
        [(_, first), (path, second)] = t.seen.requests
        assert path == "/echo"
        assert first.get("authorization") == BASIC
        assert second.get("authorization") == BASIC


def test_credentials_are_dropped_on_a_cross_origin_redirect(tmp_path: Path) -> None:
    # Both servers are allowed by the same rule, with the credential: only the origin differs.
    with target() as origin, target() as other:
        result = http_fetch(
            ctx_for(tmp_path, origin.port, other.port),
            f"{origin.url}/redirect?to={other.url}/echo",
            credential="web",
        )
        assert result.get("status") == "200"
        assert origin.seen.requests[0][1].get("authorization") == BASIC
        [(path, headers)] = other.seen.requests
        assert path == "/echo"
        assert "authorization" not in headers
        assert "password" not in http_body(result) and "Basic" not in http_body(result)


# --- the probe connects to the checked address, with the name only in Host: ---------------------


def test_a_name_reaches_the_checked_address_with_its_host_header(tmp_path: Path, dns: FixedDns) -> None:
    # "svc.midbox.test" exists only in the test's DNS: a client that resolved the name again
    # (instead of connecting to the checked address) could not reach the server at all.
    dns.set("svc.midbox.test", "127.0.0.1")
    with target() as t:
        result = http_fetch(ctx_for(tmp_path, t.port, dns=dns), f"http://svc.midbox.test:{t.port}/hello")
        assert result.get("status") == "200"
        assert http_body(result) == f"hello svc.midbox.test:{t.port}"
        [(_, headers)] = t.seen.requests
        assert headers["host"] == f"svc.midbox.test:{t.port}"
        assert dns.asked == ["svc.midbox.test"]


def test_a_url_without_a_port_sends_host_without_one(tmp_path: Path) -> None:
    # Port 80 on an address of the loopback block nothing else uses (the tests run as root, as CI does).
    server = _RecordingServer(("127.77.0.1", 80), _RecordingHandler)
    server.seen = Seen()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        on80 = dataclasses.replace(rule(80), networks=(ipaddress.ip_network("127.77.0.1/32"),))
        result = http_fetch(make_ctx(Policy([on80]), MemCredentials(), tmp_path), "http://127.77.0.1/hello")
        assert result.get("status") == "200"
        [(_, headers)] = server.seen.requests
        assert headers["host"] == "127.77.0.1"  # no ":80", and never ":None"
    finally:
        server.shutdown()
        server.server_close()


def test_an_ipv6_literal_keeps_its_brackets_in_host(tmp_path: Path) -> None:
    class V6(_RecordingServer):
        address_family = socket.AF_INET6

    server = V6(("::1", 0), _RecordingHandler)
    server.seen = Seen()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        v6 = dataclasses.replace(rule(port), networks=(ipaddress.ip_network("::1/128"),))
        ctx = make_ctx(Policy([v6]), MemCredentials(), tmp_path)
        result = http_fetch(ctx, f"http://[::1]:{port}/hello")
        assert result.get("status") == "200"
        [(_, headers)] = server.seen.requests
        assert headers["host"] == f"[::1]:{port}"  # not "::1:PORT", which reads as an address
    finally:
        server.shutdown()
        server.server_close()


# --- caps and refused input ---------------------------------------------------------------------


def test_the_body_cap_truncates_and_marks_the_result(tmp_path: Path) -> None:
    with target() as t:
        result = http_fetch(
            ctx_for(tmp_path, t.port, limits=Limits(http_response_bytes=4096)), f"{t.url}/big"
        )
    assert result.get("status") == "200"
    assert result.get("truncated") == "true"
    assert http_body(result) == "x" * 4096


def test_a_body_within_the_cap_is_not_marked(tmp_path: Path) -> None:
    with target() as t:
        result = http_fetch(ctx_for(tmp_path, t.port), f"{t.url}/hello")
    assert result.get("truncated") is None
    assert http_body(result) == f"hello 127.0.0.1:{t.port}"


@pytest.mark.parametrize("userinfo", ["user:password@", "user@", ":password@"])
def test_user_info_in_the_url_is_a_payload_error(tmp_path: Path, userinfo: str) -> None:
    with target() as t:
        with pytest.raises(PayloadError, match="user info"):
            http_fetch(ctx_for(tmp_path, t.port), f"http://{userinfo}127.0.0.1:{t.port}/echo")
        assert t.seen.connections == 0


@pytest.mark.parametrize(
    "header", ["Authorization", "authorization", "Host", "Content-Length", "Transfer-Encoding", "Connection"]
)
def test_reserved_headers_are_a_payload_error(tmp_path: Path, header: str) -> None:
    with target() as t:
        with pytest.raises(PayloadError, match="may not be set by a job"):
            http_fetch(ctx_for(tmp_path, t.port), f"{t.url}/echo", headers=f'{{"{header}": "x"}}')
        assert t.seen.connections == 0


def test_an_ordinary_header_is_sent(tmp_path: Path) -> None:
    with target() as t:
        http_fetch(ctx_for(tmp_path, t.port), f"{t.url}/echo", headers='{"X-Probe": "yes"}')
        [(_, headers)] = t.seen.requests
        assert headers["x-probe"] == "yes"
