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
