"""The target check every probe makes before it connects: literals, names, hosts rules, credentials.

Written against the mutants of ``appliance/probes/targets.py`` that survived the probe tests
(``python -m tests.mutation --only targets``): the credential and the name must reach the policy.
Nothing here connects anywhere; the DNS is the test's own (``FixedDns``).
"""

from __future__ import annotations

import asyncio
import ipaddress
from pathlib import Path

import pytest

from appliance.errors import TargetDeniedError
from appliance.probes.targets import checked_addresses, checked_target, is_literal
from hardening.policy import AllowRule, Policy, PortRange
from tests.probes.conftest import FixedDns, MemCredentials, ProbeAudit, make_ctx

NAME = "router1.midbox.test"
ADDRESS = "192.0.2.10"  # TEST-NET-1: only ever "resolved" by the test's DNS, never connected to


def by_name_rule(credentials: tuple[str, ...] = ("ops",)) -> AllowRule:
    """A rule that allows NAME by its name only: no network of it covers ADDRESS."""
    return AllowRule(
        networks=(),
        hosts=(NAME,),
        probes=frozenset({"ssh"}),
        ports=(PortRange(22, 22),),
        credentials=credentials,
    )


def by_network_rule(credentials: tuple[str, ...]) -> AllowRule:
    return AllowRule(
        networks=(ipaddress.ip_network("192.0.2.0/24"), ipaddress.ip_network("::1/128")),
        hosts=(),
        probes=frozenset({"ssh"}),
        ports=(PortRange(22, 22),),
        credentials=credentials,
    )


def denied_events(audit: object) -> list[dict[str, object]]:
    assert isinstance(audit, ProbeAudit)
    return [dict(fields) for event, fields in audit.events if event == "target.denied"]


def test_a_hosts_rule_allows_the_name_it_names(tmp_path: Path, dns: FixedDns) -> None:
    dns.set(NAME, ADDRESS)
    rule = by_name_rule()
    ctx = make_ctx(Policy([rule]), MemCredentials(), tmp_path, resolver=dns)
    addresses, allowed_by = asyncio.run(
        checked_target(ctx, probe="ssh", host=NAME, port=22, credential="ops")
    )
    assert addresses == [ipaddress.ip_address(ADDRESS)]
    assert allowed_by is rule
    assert dns.asked == [NAME]
    # The same address as a literal has no name, so the hosts rule does not cover it.
    with pytest.raises(TargetDeniedError, match=ADDRESS):
        asyncio.run(checked_target(ctx, probe="ssh", host=ADDRESS, port=22, credential="ops"))
    assert dns.asked == [NAME]


@pytest.mark.parametrize("check", [checked_target, checked_addresses], ids=["target", "addresses"])
def test_a_credential_the_rule_does_not_allow_is_refused_and_audited(
    check: object, tmp_path: Path, dns: FixedDns
) -> None:
    dns.set(NAME, ADDRESS)
    ctx = make_ctx(Policy([by_network_rule(("ops",))]), MemCredentials(), tmp_path, resolver=dns)
    assert callable(check)
    asyncio.run(check(ctx, probe="ssh", host=NAME, port=22, credential="ops"))
    with pytest.raises(TargetDeniedError, match="does not allow credential 'root'"):
        asyncio.run(check(ctx, probe="ssh", host=NAME, port=22, credential="root"))
    [entry] = denied_events(ctx.audit)
    assert (entry["target"], entry["address"], entry["credential"]) == (NAME, ADDRESS, "root")


@pytest.mark.parametrize("host", ["::1", "[::1]", "192.0.2.10"])
def test_an_ip_literal_is_its_own_answer_and_never_resolved(host: str, tmp_path: Path, dns: FixedDns) -> None:
    assert is_literal(host)
    ctx = make_ctx(Policy([by_network_rule(())]), MemCredentials(), tmp_path, resolver=dns)
    addresses = asyncio.run(checked_addresses(ctx, probe="ssh", host=host, port=22, credential=None))
    assert addresses == [ipaddress.ip_address(host.strip("[]"))]
    assert dns.asked == []


@pytest.mark.parametrize("host", [NAME, "X192.0.2.10X", "192.0.2.10.example", " 192.0.2.10"])
def test_anything_but_an_ip_literal_is_a_name(host: str) -> None:
    assert not is_literal(host)


def test_a_scope_refusal_is_audited_with_the_rule_and_reason_and_stops(tmp_path: Path) -> None:
    from hardening.scopes import Ask, CommandScope, Scopes

    rule = AllowRule(
        networks=(ipaddress.ip_network("192.0.2.0/24"),),
        hosts=(),
        probes=frozenset({"ssh"}),
        ports=(PortRange(22, 22),),
        credentials=(),
        scopes=Scopes(commands=CommandScope.parse(("uname -a",))),
        line=7,
    )
    ctx = make_ctx(Policy([rule]).scoped(Ask(command="id")), MemCredentials(), tmp_path)
    with pytest.raises(
        TargetDeniedError, match="ssh job on 192.0.2.10 refused: rule 1 .*add it to that rule's scope"
    ):
        asyncio.run(checked_target(ctx, probe="ssh", host=ADDRESS, port=22, credential=None))
    assert isinstance(ctx.audit, ProbeAudit)
    [(event, fields)] = [(e, f) for e, f in ctx.audit.events if e in ("scope.denied", "target.denied")]
    assert event == "scope.denied"
    decision = ctx.policy.check(probe="ssh", address=ipaddress.ip_address(ADDRESS), port=22)
    assert {k: fields[k] for k in ("probe", "target", "address", "port", "rule", "reason")} == {
        "probe": "ssh",
        "target": ADDRESS,
        "address": ADDRESS,
        "port": 22,
        "rule": 1,
        "reason": decision.scope,
    }


def test_the_rate_limit_lease_is_taken_for_the_address_connected_to(tmp_path: Path, dns: FixedDns) -> None:
    import dataclasses

    class Recorder:
        def __init__(self) -> None:
            self.calls: list[tuple[str, int, int | None]] = []

        async def acquire(self, address: str, port: int, rule: int | None) -> None:
            self.calls.append((address, port, rule))

    dns.set(NAME, ADDRESS, "192.0.2.11")
    other = AllowRule(
        networks=(ipaddress.ip_network("198.51.100.0/24"),),
        hosts=(),
        probes=frozenset({"ssh"}),
        ports=(PortRange(22, 22),),
        credentials=(),
    )
    lease = Recorder()
    ctx = dataclasses.replace(
        make_ctx(Policy([other, by_network_rule(())]), MemCredentials(), tmp_path, resolver=dns),
        lease=lease,  # type: ignore[arg-type]
    )
    addresses, _ = asyncio.run(checked_target(ctx, probe="ssh", host=NAME, port=22, credential=None))
    assert [str(a) for a in addresses] == [ADDRESS, "192.0.2.11"]
    # The first address (the one connected to), its port, and the number of the rule that allowed it.
    assert lease.calls == [(ADDRESS, 22, 2)]
