"""The allowlist: deny by default, special addresses only when named, every field of a rule enforced."""

from __future__ import annotations

import ipaddress

import pytest

from hardening.policy import AllowRule, Policy, PortRange, canonical, is_special


def rule(
    *nets: str,
    hosts: tuple[str, ...] = (),
    probes: tuple[str, ...] = ("ssh",),
    ports: tuple[tuple[int, int], ...] = ((22, 22),),
    creds: tuple[str, ...] = (),
) -> AllowRule:
    return AllowRule(
        networks=tuple(ipaddress.ip_network(n) for n in nets),
        hosts=hosts,
        probes=frozenset(probes),
        ports=tuple(PortRange(lo, hi) for lo, hi in ports),
        credentials=tuple(creds),
    )


def ip(s: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(s)


def test_empty_policy_denies_everything() -> None:
    d = Policy([]).check(probe="ssh", address=ip("10.0.0.1"), port=22)
    assert not d.allowed
    assert "deny by default" in d.reason


def test_address_outside_every_rule_is_denied() -> None:
    p = Policy([rule("10.0.0.0/8")])
    assert p.check(probe="ssh", address=ip("10.1.2.3"), port=22).allowed
    d = p.check(probe="ssh", address=ip("192.168.1.1"), port=22)
    assert not d.allowed
    assert "no [[allow]] rule covers 192.168.1.1" in d.reason


def test_probe_port_and_credential_are_each_enforced() -> None:
    p = Policy([rule("10.0.0.0/8", probes=("ssh",), ports=((22, 22),), creds=("linux",))])
    ok = p.check(probe="ssh", address=ip("10.0.0.1"), port=22, credential="linux")
    assert ok.allowed and ok.rule == 1
    wrong_probe = p.check(probe="snmp", address=ip("10.0.0.1"), port=22, credential="linux")
    assert not wrong_probe.allowed and "probe 'snmp'" in wrong_probe.reason
    wrong_port = p.check(probe="ssh", address=ip("10.0.0.1"), port=2222, credential="linux")
    assert not wrong_port.allowed and "port 2222" in wrong_port.reason
    wrong_cred = p.check(probe="ssh", address=ip("10.0.0.1"), port=22, credential="root-everywhere")
    assert not wrong_cred.allowed and "credential 'root-everywhere'" in wrong_cred.reason


def test_a_later_rule_can_allow_what_an_earlier_one_does_not() -> None:
    p = Policy([rule("10.0.0.0/8", ports=((22, 22),)), rule("10.0.0.0/24", ports=((2222, 2222),))])
    d = p.check(probe="ssh", address=ip("10.0.0.5"), port=2222)
    assert d.allowed and d.rule == 2


def test_port_range_bounds_are_inclusive() -> None:
    p = Policy([rule("10.0.0.0/8", probes=("tcp",), ports=((20, 25),))])
    assert p.check(probe="tcp", address=ip("10.0.0.1"), port=20).allowed
    assert p.check(probe="tcp", address=ip("10.0.0.1"), port=25).allowed
    assert not p.check(probe="tcp", address=ip("10.0.0.1"), port=19).allowed
    assert not p.check(probe="tcp", address=ip("10.0.0.1"), port=26).allowed


@pytest.mark.parametrize(
    "addr",
    [
        "127.0.0.1",
        "127.8.9.10",
        "169.254.169.254",
        "169.254.1.1",
        "0.0.0.0",
        "::1",
        "fe80::1",
        "::",
        "fd00:ec2::254",
        "224.0.0.1",
        "255.255.255.255",
        "100.100.100.200",
        "168.63.129.16",
    ],
)
def test_special_addresses_are_refused_by_a_catch_all_rule(addr: str) -> None:
    p = Policy([rule("0.0.0.0/0", "::/0")])
    d = p.check(probe="ssh", address=ip(addr), port=22)
    assert not d.allowed
    assert "must name it" in d.reason


@pytest.mark.parametrize("addr", ["::ffff:127.0.0.1", "::ffff:169.254.169.254", "::ffff:a9fe:a9fe"])
def test_ipv4_mapped_ipv6_is_judged_as_its_ipv4_twin(addr: str) -> None:
    assert is_special(ip(addr))
    assert canonical(ip(addr)).version == 4
    # A catch-all IPv6 rule must not let a mapped loopback or metadata address through.
    assert not Policy([rule("::/0")]).check(probe="ssh", address=ip(addr), port=22).allowed
    assert not Policy([rule("0.0.0.0/0", "::/0")]).check(probe="ssh", address=ip(addr), port=22).allowed


def test_mapped_address_of_an_allowed_network_is_allowed() -> None:
    p = Policy([rule("10.0.0.0/8")])
    assert p.check(probe="ssh", address=ip("::ffff:10.1.1.1"), port=22).allowed


def test_loopback_allowed_only_when_a_rule_names_it() -> None:
    named = Policy([rule("127.0.0.1/32")])
    assert named.check(probe="ssh", address=ip("127.0.0.1"), port=22).allowed
    # Naming 127.0.0.1 does not open the rest of the loopback block.
    assert not named.check(probe="ssh", address=ip("127.0.0.2"), port=22).allowed
    # A supernet of the special block is not "naming" it.
    assert not Policy([rule("0.0.0.0/1")]).check(probe="ssh", address=ip("127.0.0.1"), port=22).allowed


def test_metadata_address_allowed_only_by_an_explicit_cidr() -> None:
    md = ip("169.254.169.254")
    assert not Policy([rule("0.0.0.0/0")]).check(probe="http", address=md, port=22).allowed
    assert not Policy([rule("10.0.0.0/8")]).check(probe="ssh", address=md, port=22).allowed
    assert Policy([rule("169.254.169.254/32")]).check(probe="ssh", address=md, port=22).allowed


def test_hostname_rule_cannot_reach_a_special_address() -> None:
    # "localhost" named by a hosts entry resolves to loopback: still refused without a loopback CIDR.
    p = Policy([rule(hosts=("localhost",))])
    d = p.check(probe="ssh", address=ip("127.0.0.1"), port=22, hostname="localhost")
    assert not d.allowed and "must name it" in d.reason


def test_hostname_rule_matches_case_and_trailing_dot_insensitively() -> None:
    p = Policy([rule(hosts=("Router1.Example.",))])
    assert p.check(probe="ssh", address=ip("10.9.9.9"), port=22, hostname="router1.example").allowed
    assert p.check(probe="ssh", address=ip("10.9.9.9"), port=22, hostname="ROUTER1.EXAMPLE.").allowed
    assert not p.check(probe="ssh", address=ip("10.9.9.9"), port=22, hostname="router2.example").allowed
    # Without a hostname (an IP literal target) a hosts-only rule matches nothing.
    assert not p.check(probe="ssh", address=ip("10.9.9.9"), port=22).allowed


def test_rule_without_credentials_refuses_every_credential_but_allows_none() -> None:
    p = Policy([rule("10.0.0.0/8", creds=())])
    assert p.check(probe="ssh", address=ip("10.0.0.1"), port=22).allowed
    assert not p.check(probe="ssh", address=ip("10.0.0.1"), port=22, credential="x").allowed


def test_ipv6_networks() -> None:
    p = Policy([rule("2001:db8::/32")])
    assert p.check(probe="ssh", address=ip("2001:db8::1"), port=22).allowed
    assert not p.check(probe="ssh", address=ip("2001:db9::1"), port=22).allowed
    assert not p.check(probe="ssh", address=ip("10.0.0.1"), port=22).allowed


# The tests below were written against surviving mutants (python -m tests.mutation --only policy).


def test_denials_are_false_not_merely_falsy_and_every_reason_is_exact() -> None:
    empty = Policy([]).check(probe="ssh", address=ip("10.0.0.1"), port=22)
    assert empty.allowed is False and empty.rule is None
    assert empty.reason == "the signed config has no [[allow]] rules (deny by default)"
    p = Policy([rule("10.0.0.0/8")])
    outside = p.check(probe="ssh", address=ip("192.168.1.1"), port=22)
    assert outside.allowed is False and outside.rule is None
    assert outside.reason == "no [[allow]] rule covers 192.168.1.1; add one to the signed config if it should"
    ok = p.check(probe="ssh", address=ip("10.0.0.1"), port=22)
    assert ok.allowed is True and ok.rule == 1 and ok.reason == "allowed by rule 1"
    special = Policy([rule("0.0.0.0/0")]).check(probe="ssh", address=ip("127.0.0.1"), port=22)
    assert special.reason == (
        "127.0.0.1 is a loopback, link-local or metadata address; rule 1 must name it with a CIDR inside that block"
    )


@pytest.mark.parametrize(
    ("first", "address"),
    [
        (rule("10.9.0.0/16"), "10.0.0.1"),  # another network
        (rule("10.0.0.0/8", probes=("snmp",)), "10.0.0.1"),  # another probe
        (rule("10.0.0.0/8", ports=((23, 23),)), "10.0.0.1"),  # another port
        (rule("10.0.0.0/8", creds=("other",)), "10.0.0.1"),  # another credential
        (rule("0.0.0.0/0", creds=("ops",)), "127.0.0.1"),  # a catch-all cannot reach a special address
    ],
    ids=["network", "probe", "port", "credential", "special"],
)
def test_a_rule_that_refuses_does_not_stop_a_later_rule_from_allowing(first: AllowRule, address: str) -> None:
    p = Policy([first, rule("127.0.0.0/8", "10.0.0.0/8", creds=("ops",))])
    d = p.check(probe="ssh", address=ip(address), port=22, credential="ops")
    assert d.allowed and d.rule == 2


def test_unknown_host_key_mode_is_refused_with_the_modes_named() -> None:
    with pytest.raises(ValueError, match=r"^host_keys must be one of \['pin-on-first-use', 'pinned'\]$"):
        AllowRule(
            networks=(), hosts=(), probes=frozenset({"ssh"}), ports=(), credentials=(), host_keys="trust-all"
        )


def test_ordinary_addresses_are_not_special_and_need_no_explicit_naming() -> None:
    for address in ("10.0.0.1", "192.0.2.7", "2001:db8::1", "::ffff:10.0.0.1"):
        assert is_special(ip(address)) is False
        assert rule("0.0.0.0/0", "::/0").names_explicitly(canonical(ip(address))) is True


def test_rule_number_lookup_is_one_based_and_bounded() -> None:
    first, second = rule("10.0.0.0/8"), rule("192.0.2.0/24")
    p = Policy([first, second])
    assert p.rule(1) is first and p.rule(2) is second
    assert p.rule(None) is None and p.rule(0) is None and p.rule(3) is None and p.rule(-1) is None


def test_credentials_for_lists_every_allowing_rule_in_order_each_once() -> None:
    p = Policy(
        [
            rule("10.0.0.0/8", creds=("a", "b")),
            rule("10.0.0.0/8", probes=("snmp",), creds=("wrong-probe",)),
            rule("10.0.0.0/8", ports=((2222, 2222),), creds=("wrong-port",)),
            rule("192.0.2.0/24", creds=("wrong-network",)),
            rule(hosts=("router1.example",), creds=("by-name",)),
            rule("10.0.0.0/16", creds=("b", "c")),
        ]
    )
    assert p.credentials_for(probe="ssh", address=ip("10.0.0.1"), port=22) == ("a", "b", "c")
    assert p.credentials_for(probe="ssh", address=ip("10.0.0.1"), port=22, hostname="router1.example") == (
        "a", "b", "by-name", "c",
    )  # fmt: skip
    # An IPv4-mapped address is judged as its IPv4 twin here too.
    assert p.credentials_for(probe="ssh", address=ip("::ffff:10.0.0.1"), port=22) == ("a", "b", "c")
    assert p.credentials_for(probe="ssh", address=ip("10.1.0.1"), port=22) == ("a", "b")
    assert p.credentials_for(probe="snmp", address=ip("10.0.0.1"), port=22) == ("wrong-probe",)
    assert p.credentials_for(probe="ssh", address=ip("172.16.0.1"), port=22) == ()


def test_the_first_near_miss_is_the_reason_not_a_later_one() -> None:
    # Rule 1 matches the address but not the probe; rule 2 matches but not the port: the operator is told
    # about rule 1, the first rule that came close, whatever follows it.
    p = Policy([rule("10.0.0.0/8", probes=("snmp",)), rule("10.0.0.0/8", ports=((2222, 2222),))])
    d = p.check(probe="ssh", address=ip("10.1.2.3"), port=22)
    assert not d.allowed and d.reason.startswith("rule 1 matches 10.1.2.3 but not probe 'ssh'")


def test_a_scope_refusal_names_its_rule_in_the_decision() -> None:
    import dataclasses

    from hardening.scopes import Ask, CommandScope, Scopes

    scoped = dataclasses.replace(
        rule("10.0.0.0/8"), scopes=Scopes(commands=CommandScope.parse(("uname -a",)))
    )
    p = Policy([rule("192.168.0.0/16"), scoped]).scoped(Ask(command="id"))
    d = p.check(probe="ssh", address=ip("10.1.2.3"), port=22)
    assert not d.allowed and d.scope is not None and d.rule == 2


def test_the_decision_cache_keeps_a_small_ask_and_never_a_huge_one() -> None:
    # Hostile megabyte commands must not be held by the cache (memory), and the verdict is the same
    # whether it came from the cache or not.
    from hardening import policy as policy_module
    from hardening.scopes import Ask, CommandScope, Scopes

    rule = AllowRule(
        networks=(ipaddress.ip_network("10.0.0.0/8"),), hosts=(), probes=frozenset({"ssh"}),
        ports=(PortRange(1, 65535),), credentials=(),
        scopes=Scopes(commands=CommandScope.parse(("echo {n:int}",))),
    )  # fmt: skip
    policy = Policy([rule])
    address = ipaddress.ip_address("10.0.0.1")
    huge = Ask(command="echo " + "1" * (policy_module.CACHED_ASK_CHARS + 1))
    assert not policy.scoped(huge).check(probe="ssh", address=address, port=22).allowed
    small = policy.scoped(Ask(command="echo 7"))
    first = small.check(probe="ssh", address=address, port=22)
    assert first.allowed and small.check(probe="ssh", address=address, port=22) == first
    held = [key[-1] for key in policy._compiled.decisions]  # the cache itself: what it holds is the point
    assert Ask(command="echo 7") in held and huge not in held
