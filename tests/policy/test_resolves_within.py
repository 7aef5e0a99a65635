"""Issue 13 item 11: a ``host = "name"`` rule matched on the name alone, so whoever answers DNS for the
name could aim the rule's probes and credentials at any address. ``resolves_within`` bounds where."""

from __future__ import annotations

import asyncio
import ipaddress
from pathlib import Path

import pytest

from appliance.config.parse import parse_config
from appliance.config.warnings import config_warnings
from appliance.errors import ConfigError, TargetDeniedError
from appliance.probes.targets import checked_addresses
from tests.probes.conftest import FixedDns, MemCredentials, make_ctx
from tests.signing.helpers import config_toml

SOURCE = Path("/etc/midbox/midbox.toml")


def parsed(rule: str):  # type: ignore[no-untyped-def]
    return parse_config(config_toml(extra=rule), SOURCE)


HOST_RULE = """
[[allow]]
host = "db1.corp"
probes = ["ssh"]
ports = [22]
credentials = ["linux-ro"]
"""


def test_a_host_rule_resolving_outside_its_networks_is_denied_and_audited(tmp_path: Path) -> None:
    config = parsed(HOST_RULE + 'resolves_within = ["10.20.0.0/24", "fd00:20::/64"]\n')
    dns = FixedDns()
    ctx = make_ctx(config.policy(), MemCredentials(), tmp_path, resolver=dns)

    def check(*addresses: str) -> list[str]:
        dns.set("db1.corp", *addresses)
        got = asyncio.run(checked_addresses(ctx, probe="ssh", host="db1.corp", port=22, credential=None))
        return [str(a) for a in got]

    assert check("10.20.0.5") == ["10.20.0.5"]
    assert check("fd00:20::5") == ["fd00:20::5"]
    for outside in ("10.30.0.5", "192.168.1.1", "fd00:30::1"):
        with pytest.raises(TargetDeniedError, match="resolves within 10.20.0.0/24, fd00:20::/64"):
            check(outside)
    # One address outside among allowed ones is enough: the resolver's order must not decide.
    with pytest.raises(TargetDeniedError):
        check("10.20.0.5", "10.30.0.5")
    denied = [f for e, f in ctx.audit.events if e == "target.denied"]  # type: ignore[attr-defined]
    assert [d["address"] for d in denied] == ["10.30.0.5", "192.168.1.1", "fd00:30::1", "10.30.0.5"]
    assert all("resolved to" in str(d["reason"]) for d in denied)


def test_without_resolves_within_the_name_alone_matches_and_is_warned() -> None:
    config = parsed(HOST_RULE)
    decision = config.policy().check(
        probe="ssh", address=ipaddress.ip_address("192.168.1.1"), port=22, hostname="db1.corp"
    )
    assert decision.allowed  # as before: the documented trade-off, warned below
    [warning] = [w for w in config_warnings(config) if w.topic == "allow rules"]
    assert "allow[1] names host db1.corp" in warning.message and "resolves_within" in warning.message
    bounded = parsed(HOST_RULE + 'resolves_within = ["10.20.0.0/24"]\n')
    assert not [w for w in config_warnings(bounded) if w.topic == "allow rules"]


def test_a_literal_address_is_not_widened_by_resolves_within() -> None:
    """resolves_within applies to names: it never allows an address given as a literal."""
    config = parsed(HOST_RULE + 'resolves_within = ["10.20.0.0/24"]\n')
    decision = config.policy().check(probe="ssh", address=ipaddress.ip_address("10.20.0.5"), port=22)
    assert not decision.allowed


@pytest.mark.parametrize(
    ("rule", "error"),
    [
        (
            '\n[[allow]]\ncidr = "10.0.0.0/8"\nprobes = ["tcp"]\nports = [22]\nresolves_within = ["10.0.0.0/8"]\n',
            "only applies to a rule with 'host'",
        ),
        (HOST_RULE + "resolves_within = []\n", "is empty"),
        (HOST_RULE + 'resolves_within = ["10.20.0.1/24"]\n', "is not a network"),
        (HOST_RULE + "resolves_within = [5]\n", "string or a list of strings"),
    ],
)
def test_resolves_within_is_strict(rule: str, error: str) -> None:
    with pytest.raises(ConfigError, match=error):
        parsed(rule)
