"""The policy's per-config caches and the dispatcher's parse-once cache change no decision.

A warm policy (one object asked many things, its caches bounded small so they start over) must answer
exactly as a cold one built afresh for each question; the integer network test must agree with
``ipaddress``; a payload is parsed once per dispatcher and a big or broken one is never kept.
"""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hardening.policy as policy_module
from appliance.asks import AskCache, job_ask
from appliance.errors import PayloadError
from appliance.probes.base import Job
from hardening.policy import AllowRule, Policy, PortRange
from hardening.scopes import Ask, CommandScope, Scopes
from tests.support.policy_strategies import jobs, rules

ANY_PORT = (PortRange(1, 65535),)


def _rule(net: str, commands: tuple[str, ...] | None = None, hosts: tuple[str, ...] = ()) -> AllowRule:
    return AllowRule(
        networks=(ipaddress.ip_network(net),),
        hosts=hosts,
        probes=frozenset({"ssh", "snmp", "http", "tcp"}),
        ports=ANY_PORT,
        credentials=("a",),
        scopes=Scopes(commands=CommandScope.parse(commands)) if commands else Scopes(),
    )


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(rules(), max_size=4), st.lists(jobs(), min_size=1, max_size=12))
def test_a_warm_policy_decides_as_a_cold_one(
    rule_list: list[AllowRule], job_list: list[tuple[Job, int, str | None]]
) -> None:
    warm = Policy(rule_list)
    with pytest.MonkeyPatch.context() as mp:
        # Tiny bounds: the caches start over mid-run, which must change nothing either.
        mp.setattr(policy_module, "DECISION_CACHE_ENTRIES", 3)
        mp.setattr(policy_module, "SCOPE_CACHE_ENTRIES", 2)
        for job, port, credential in job_list * 2:  # twice: the second pass answers from the caches
            kind = {"SSHCommand": "ssh", "SNMP": "snmp", "RESTProbe": "http"}[job.topic]
            ask = job_ask(job)
            kw = {
                "probe": kind,
                "address": ipaddress.ip_address(job.source),
                "port": port,
                "credential": credential,
            }
            cold = Policy(rule_list).scoped(ask)
            assert warm.scoped(ask).check(**kw) == cold.check(**kw)  # type: ignore[arg-type]
            assert warm.scoped(ask).verdicts(**kw) == cold.verdicts(**kw)  # type: ignore[arg-type]
            assert warm.check(**kw) == Policy(rule_list).check(**kw)  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(
    st.ip_addresses(),
    st.ip_addresses().flatmap(
        lambda a: st.integers(0, a.max_prefixlen).map(
            lambda n: ipaddress.ip_network(f"{a}/{n}", strict=False)
        )
    ),
)
def test_the_integer_network_test_agrees_with_ipaddress(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address, net: ipaddress.IPv4Network | ipaddress.IPv6Network
) -> None:
    rule = AllowRule(networks=(net,), hosts=(), probes=frozenset({"tcp"}), ports=ANY_PORT, credentials=())
    verdicts = Policy([rule]).verdicts(probe="tcp", address=address, port=1)
    assert bool(verdicts) == (policy_module.canonical(address) in net)


def test_one_policy_judges_each_ask_by_its_own_scope() -> None:
    policy = Policy([_rule("10.0.0.0/8", ("uname -a",))])
    kw = {"probe": "ssh", "address": ipaddress.ip_address("10.1.2.3"), "port": 22}
    for _ in range(2):
        assert policy.scoped(Ask(command="uname -a")).check(**kw).allowed  # type: ignore[arg-type]
        refused = policy.scoped(Ask(command="uname -a; reboot")).check(**kw)  # type: ignore[arg-type]
        assert not refused.allowed and refused.scope and "'uname -a; reboot'" in refused.reason
        assert not policy.check(**kw).allowed  # type: ignore[arg-type]  # no ask: a scoped rule refuses


def test_a_host_rule_is_judged_per_hostname_and_address() -> None:
    rule = AllowRule(
        networks=(),
        hosts=("db.example",),
        probes=frozenset({"ssh"}),
        ports=ANY_PORT,
        credentials=(),
        resolves_within=(ipaddress.ip_network("10.0.0.0/8"),),
    )
    policy = Policy([rule])
    inside, outside = ipaddress.ip_address("10.0.0.5"), ipaddress.ip_address("192.0.2.5")
    for _ in range(2):
        assert policy.check(probe="ssh", address=inside, port=22, hostname="db.example").allowed
        assert not policy.check(probe="ssh", address=outside, port=22, hostname="db.example").allowed
        assert not policy.check(probe="ssh", address=inside, port=22, hostname="other.example").allowed
        assert not policy.check(probe="ssh", address=inside, port=22).allowed


def test_a_huge_ask_is_judged_but_not_kept() -> None:
    policy = Policy([_rule("10.0.0.0/8", ("echo {n:int}",))])
    huge = Ask(command="echo " + "1" * (policy_module.CACHED_ASK_CHARS + 1))
    decision = policy.scoped(huge).check(probe="ssh", address=ipaddress.ip_address("10.0.0.1"), port=22)
    assert not decision.allowed and decision.scope
    small = policy.scoped(Ask(command="echo 7"))
    assert small.check(probe="ssh", address=ipaddress.ip_address("10.0.0.1"), port=22).allowed
    kept = [key[2] for key in policy._compiled.scopes]  # the cache itself: what it holds is the point
    assert Ask(command="echo 7") in kept and huge not in kept
    decided = [key[-1] for key in policy._compiled.decisions]
    assert Ask(command="echo 7") in decided and huge not in decided


def _snmp_job(source: str, spec: str = "walk system") -> Job:
    return Job("0" * 32, "SNMP", "snmp", source, "a", parameters=(("oid_spec_list", spec),))


def test_a_payload_sent_to_many_targets_is_parsed_once() -> None:
    cache = AskCache()
    first, ask = cache.prepared(_snmp_job("10.0.0.1"))
    second, again = cache.prepared(_snmp_job("10.0.0.2"))
    assert first.parsed is not None and second.parsed is first.parsed and again == ask
    assert second.source == "10.0.0.2"  # the parse is shared, the job is not
    assert ask.oids == ((1, 3, 6, 1, 2, 1, 1),)
    other, other_ask = cache.prepared(_snmp_job("10.0.0.1", "walk interfaces"))
    assert other.parsed is not first.parsed and other_ask.oids == ((1, 3, 6, 1, 2, 1, 2),)


def test_a_big_payload_is_parsed_every_time_and_a_broken_one_always_refused() -> None:
    cache = AskCache(entries=4, max_chars=64)
    big = _snmp_job("10.0.0.1", "\n".join(["walk system"] * 10))
    assert cache.prepared(big)[0].parsed is not cache.prepared(big)[0].parsed
    broken = _snmp_job("10.0.0.1", "walk no.such.thing")
    for _ in range(2):
        with pytest.raises(PayloadError):
            cache.prepared(broken)
    # Bounded: more distinct payloads than entries still answer right.
    for n in range(1, 10):
        assert cache.prepared(_snmp_job("10.0.0.1", f"get 1.3.6.1.2.1.1.{n}.0"))[1].oids == (
            (1, 3, 6, 1, 2, 1, 1, n, 0),
        )
