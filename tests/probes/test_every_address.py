"""Every address of a target name must pass the policy, for SSH, SNMP and HTTP alike.

A name the test's DNS resolves to one allowed and one forbidden address is refused before anything
is sent anywhere: a ``target.denied`` audit entry names the forbidden address, and listeners on both
addresses see nothing. The control case (the allowed address alone) shows the listeners would see it.
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass
from pathlib import Path

import pytest

from appliance.errors import ProbeError, TargetDeniedError
from appliance.probes.base import Job, Probe, ProbeContext
from appliance.probes.http import HttpProbe
from appliance.probes.snmp.probe import SnmpProbe
from appliance.probes.ssh import SshProbe
from hardening.policy import Policy
from tests.probes.conftest import (
    FixedDns,
    Listener,
    MemCredential,
    MemCredentials,
    ProbeAudit,
    listener_pair,
    loopback_rule,
    make_ctx,
    make_job,
)

NAME = "multi.midbox.test"


@dataclass(frozen=True)
class Kind:
    probe: str
    sock: socket.SocketKind

    def new(self) -> Probe:
        if self.probe == "ssh":
            return SshProbe(connect_timeout_s=2)
        if self.probe == "snmp":
            return SnmpProbe()
        return HttpProbe()

    def job(self, port: int) -> Job:
        if self.probe == "ssh":
            return make_job("SSHCommand", "id", NAME, port=str(port), credential="ops")
        if self.probe == "snmp":
            return make_job(
                "SNMP", "snmp", NAME, oid_spec_list="get 1.3.6.1.2.1.1.1.0", port=str(port),
                credential="ro", timeout="200", retries="0",
            )  # fmt: skip
        return make_job("RESTProbe", "http", NAME, url=f"http://{NAME}:{port}/")


KINDS = [Kind("ssh", socket.SOCK_STREAM), Kind("snmp", socket.SOCK_DGRAM), Kind("http", socket.SOCK_STREAM)]


def ctx_for(kind: Kind, port: int, tmp_path: Path, dns: FixedDns) -> ProbeContext:
    creds = MemCredentials(
        MemCredential("ops", "ssh-password", "ops", (b"pw",)),
        MemCredential("ro", "snmp-community", None, (b"public",)),
    )
    # The rule allows 127.0.0.1 only, on the listeners' port, with both credentials.
    policy = Policy([loopback_rule((kind.probe,), ((port, port),), ("ops", "ro"))])
    return make_ctx(policy, creds, tmp_path, resolver=dns)


def run(kind: Kind, ctx: ProbeContext, port: int) -> None:
    probe = kind.new()

    async def go() -> None:
        try:
            await probe.run(kind.job(port), ctx)
        finally:
            await probe.aclose()

    asyncio.run(go())


def settle(*listeners: Listener) -> list[tuple[str, int]]:
    """What reached the listeners, after a moment for an in-flight datagram or accept to land."""
    asyncio.run(asyncio.sleep(0.1))
    return [hit for listener in listeners for hit in listener.hits()]


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.probe)
@pytest.mark.parametrize(
    "answer",
    [("127.0.0.1", "169.254.169.254"), ("127.0.0.1", "127.0.0.2"), ("127.0.0.2", "127.0.0.1")],
    ids=["allowed+metadata", "allowed+denied", "denied+allowed"],
)
def test_a_name_with_one_forbidden_address_is_refused(
    kind: Kind, answer: tuple[str, str], tmp_path: Path, dns: FixedDns
) -> None:
    dns.set(NAME, *answer)
    bad = next(a for a in answer if a != "127.0.0.1")
    with listener_pair(kind.sock) as (allowed, other):
        ctx = ctx_for(kind, allowed.port, tmp_path, dns)
        with pytest.raises(TargetDeniedError, match=f"{NAME} \\({bad}\\)"):
            run(kind, ctx, allowed.port)
        assert settle(allowed, other) == []
    assert isinstance(ctx.audit, ProbeAudit)
    entries = [fields for event, fields in ctx.audit.events if event == "target.denied"]
    assert [(e["target"], e["address"], e["probe"]) for e in entries] == [(NAME, bad, kind.probe)]
    assert not any(event == "probe.connect" for event, _ in ctx.audit.events)
    assert ctx.credentials.lookups == []  # type: ignore[attr-defined]


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.probe)
def test_control_the_allowed_address_alone_is_reached(kind: Kind, tmp_path: Path, dns: FixedDns) -> None:
    # The listeners answer nothing useful, so the probe fails, but only after reaching 127.0.0.1:
    # the refusals above are the policy's doing, not a listener that could not be reached.
    dns.set(NAME, "127.0.0.1")
    with listener_pair(kind.sock) as (allowed, other):
        ctx = ctx_for(kind, allowed.port, tmp_path, dns)
        with pytest.raises(ProbeError) as raised:
            run(kind, ctx, allowed.port)
        assert not isinstance(raised.value, TargetDeniedError)
        assert settle(allowed) != []
        assert other.hits() == []
