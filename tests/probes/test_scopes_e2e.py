"""Scopes end to end: a job goes through the dispatcher to a real sshd, snmpd or HTTP server; an
out-of-scope job gets an error result naming the rule and the reason, a scope.denied audit entry, and
never reaches the target."""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
from pathlib import Path
from xml.sax.saxutils import quoteattr

import pytest

from appliance.dispatch import Dispatcher
from appliance.payload import parse_xml
from appliance.probes.base import Probe, ProbeContext
from appliance.probes.http import HttpProbe
from appliance.probes.snmp.probe import SnmpProbe
from appliance.probes.ssh import SshProbe
from appliance.queue.records import OutputRecord
from hardening.policy import AllowRule, Policy, PortRange
from hardening.scopes import CommandScope, PathScope, Scopes
from tests.daemons import SnmpServer, SshServer
from tests.probes.conftest import MemCredential, MemCredentials, make_ctx
from tests.support.http_target import target
from tests.support.ssh import creds as ssh_creds
from tests.support.ssh import pinned_state


def rule(probe: str, port: int, scopes: Scopes, creds: tuple[str, ...]) -> AllowRule:
    return AllowRule(
        networks=(ipaddress.ip_network("127.0.0.1/32"),),
        hosts=(),
        probes=frozenset({probe}),
        ports=(PortRange(port, port),),
        credentials=creds,
        scopes=scopes,
        line=12,
    )


def record(topic: str, name: str, **params: str) -> OutputRecord:
    body = "".join(f"<parameter name={quoteattr(k)} value={quoteattr(v)}/>" for k, v in params.items())
    return OutputRecord(
        sys_id="1" * 32, agent="mid.server.test", topic=topic, name=name, source="127.0.0.1",
        payload=f"<parameters>{body}</parameters>", state="ready", agent_correlator="", priority="2",
        sys_created_on="",
    )  # fmt: skip


def handle(probe: Probe, ctx: ProbeContext, rec: OutputRecord) -> tuple[str, str | None]:
    dispatcher = Dispatcher({rec.topic: probe}, ctx)

    async def go() -> tuple[str, str | None]:
        try:
            outcome = await dispatcher.handle(rec)
            return outcome.payload, outcome.error
        finally:
            await dispatcher.aclose()

    return asyncio.run(go())


def scope_denials(ctx: ProbeContext) -> list[dict[str, object]]:
    return [f for e, f in ctx.audit.events if e == "scope.denied"]  # type: ignore[attr-defined]


SCRIPT = '#!/bin/sh\necho script-ran "$1"\n'


@pytest.mark.daemons
def test_ssh_commands_scope(sshd: SshServer, tmp_path: Path) -> None:
    digest = hashlib.sha256(SCRIPT.encode()).hexdigest()
    scopes = Scopes(
        commands=CommandScope.parse(("id -un", "echo {word:word}", f"sha256:{digest} {{arg:int}}"))
    )
    policy = Policy([rule("ssh", sshd.port, scopes, ("pw",))])
    ctx = make_ctx(policy, ssh_creds(sshd), pinned_state(tmp_path, sshd))
    port = str(sshd.port)
    payload, error = handle(SshProbe(), ctx, record("SSHCommand", "id -un", port=port))
    assert error is None and parse_xml(payload, 10**6).findtext(".//stdout") == f"{sshd.user}\n"
    # A ${var} value is judged in place: inside the placeholder's class runs, a metacharacter does not.
    _, error = handle(SshProbe(), ctx, record("SSHCommand", "echo ${w}", port=port, w="hello"))
    assert error is None
    _, error = handle(SshProbe(), ctx, record("SSHCommand", "echo ${w}", port=port, w="a;id"))
    assert error is not None and "rule 1 (line 12)" in error and "is not in its 'commands'" in error
    # A script is allowed by its SHA-256, whatever name the instance gives it.
    payload, error = handle(
        SshProbe(), ctx, record("SSHCommand", "${File:any.sh} 42", port=port, **{"any.sh": SCRIPT})
    )
    assert error is None and "script-ran 42" in (parse_xml(payload, 10**6).findtext(".//stdout") or "")
    _, error = handle(
        SshProbe(), ctx, record("SSHCommand", "${File:any.sh} 42", port=port, **{"any.sh": SCRIPT + "id\n"})
    )
    assert error is not None and "sha256:" in error
    for near in (
        "id -un; id",
        "id -un && id",
        "id -un | cat",
        "id -un $(id)",
        "id -un `id`",
        "id -un ",
        "id",
    ):
        logins_before = [e for e, _ in ctx.audit.events].count("credential.used")  # type: ignore[attr-defined]
        _, error = handle(SshProbe(), ctx, record("SSHCommand", near, port=port))
        assert error is not None and "rule 1 (line 12)" in error, near
        assert [e for e, _ in ctx.audit.events].count("credential.used") == logins_before  # type: ignore[attr-defined]
    assert len(scope_denials(ctx)) == 9
    assert {f["rule"] for f in scope_denials(ctx)} == {1}


@pytest.mark.daemons
def test_snmp_oids_scope(snmpd: SnmpServer, tmp_path: Path) -> None:
    scopes = Scopes(oids=((1, 3, 6, 1, 2, 1, 1),))
    creds = MemCredentials(MemCredential("v2", "snmp-community", None, (snmpd.community.encode(),)))
    ctx = make_ctx(Policy([rule("snmp", snmpd.port, scopes, ("v2",))]), creds, tmp_path)
    port = str(snmpd.port)
    payload, error = handle(SnmpProbe(), ctx, record("SNMP", "snmp", port=port, oid_spec_list="walk system"))
    assert error is None and "sysDescr" in payload
    _, error = handle(
        SnmpProbe(), ctx, record("SNMP", "snmp", port=port, oid_spec_list="walk 1.3.6.1.2.1.10")
    )
    assert error is not None and "OID 1.3.6.1.2.1.10 is outside its 'oids'" in error
    _, error = handle(
        SnmpProbe(), ctx, record("SNMP", "snmp", port=port, oid_spec_list="get sysDescr.0 ifNumber.0")
    )
    assert error is not None and "1.3.6.1.2.1.2.1.0" in error
    _, error = handle(SnmpProbe(), ctx, record("SNMP", "snmp", port=port, oid_spec_list="set sysName.0 x"))
    assert error is not None and "unknown operation" in error  # there is no SNMP SET anywhere
    assert len(scope_denials(ctx)) == 2


def test_http_methods_and_paths_scope(tmp_path: Path) -> None:
    with target() as t:
        scopes = Scopes(methods=frozenset({"GET"}), paths=PathScope.parse(("/ok/**", "/redirect")))
        creds = MemCredentials()
        ctx = make_ctx(Policy([rule("http", t.port, scopes, ())]), creds, tmp_path)
        _, error = handle(HttpProbe(), ctx, record("RESTProbe", "http", url=f"{t.url}/ok/a"))
        assert error is None
        for url, method, why in (
            (f"{t.url}/ok/../secret", "GET", "path '/secret'"),
            (f"{t.url}/ok/%2e%2e/secret", "GET", "path '/secret'"),
            (f"{t.url}/okay", "GET", "path '/okay'"),
            (f"{t.url}/ok/a", "POST", "method 'POST'"),
            # A redirect is judged hop by hop: the test server sends /redirect?to=... on.
            (f"{t.url}/redirect?to=/secret", "GET", "path '/secret'"),
        ):
            _, error = handle(HttpProbe(), ctx, record("RESTProbe", "http", url=url, http_method=method))
            assert error is not None and why in error and "rule 1 (line 12)" in error, url
        assert [p for p, _ in t.seen.requests if "secret" in p and "redirect" not in p] == []
