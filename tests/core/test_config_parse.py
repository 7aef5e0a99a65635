"""Strict config parsing: every error names the key path and says what to do."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

import pytest

from appliance.config import parse_config
from appliance.errors import ConfigError
from tests.support.configs import GOOD


def parse(text: str) -> object:
    return parse_config(text.encode(), Path("/etc/midbox/config.toml"))


def test_good_config_parses_into_typed_values() -> None:
    c = parse_config(GOOD.encode(), Path("/etc/midbox/config.toml"))
    assert c.version == 7 and c.appliance.agent == "mid.server.edge-01"
    assert c.instance.ca_file == Path("/etc/midbox/instance-ca.pem")  # relative to the config file
    policy = c.policy()
    ok = policy.check(
        probe="http", address=ipaddress.ip_address("10.20.0.9"), port=8050, credential="linux-ro"
    )
    assert ok.allowed and ok.rule == 1
    assert not policy.check(probe="snmp", address=ipaddress.ip_address("10.20.0.9"), port=161).allowed
    assert not policy.check(probe="http", address=ipaddress.ip_address("10.20.1.9"), port=443).allowed


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("[appliance]", "[appliance]\ncolour = 'red'"), "unknown key 'appliance.colour'"),
        (("[[allow]]", "[[allow]]\nproto = 1"), "unknown key 'proto' in rule 1"),
        (("version = 7", "version = '7'"), "'version' (line 1) must be int"),
        (("version = 7", "version = true"), "'version' (line 1) must be int"),
        (("expires = 2027-06-01T00:00:00Z", "expires = 2027-06-01T00:00:00"), "needs a time zone"),
        (("https://acme", "http://acme"), "plain http is refused"),
        (('probes = ["ssh", "http"]', 'probes = ["ssh", "telnet"]'), "unknown probe 'telnet'"),
        (('cidr = "10.20.0.0/24"', 'cidr = "10.20.0.1/24"'), "is not a network"),
        (('ports = [22, 443, "8000-8100"]', "ports = [0]"), "outside 1-65535"),
        (('name = "edge-01"', 'name = "edge 01; rm"'), "appliance.name"),
        (('client_key = "appliance.key"', ""), "go together"),
    ],
)
def test_bad_config_errors_name_the_key(change: tuple[str, str], message: str) -> None:
    old, new = change
    assert old in GOOD
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse(GOOD.replace(old, new, 1))


def test_oversize_and_non_utf8_are_refused() -> None:
    with pytest.raises(ConfigError, match="more than"):
        parse("#" * 1_000_001)
    with pytest.raises(ConfigError, match="UTF-8"):
        parse_config(b"\xff\xfe", Path("c.toml"))


def test_empty_allowlist_denies_everything() -> None:
    c = parse_config(GOOD.split("[[allow]]")[0].encode(), Path("c.toml"))
    d = c.policy().check(probe="http", address=ipaddress.ip_address("10.20.0.9"), port=443)
    assert not d.allowed and "deny by default" in d.reason


def test_tls_ca_of_a_rule_is_relative_to_the_config() -> None:
    c = parse_config(
        GOOD.replace(
            'credentials = ["linux-ro"]', 'credentials = ["linux-ro"]\ntls_ca = "targets-ca.pem"'
        ).encode(),
        Path("/etc/midbox/config.toml"),
    )
    assert c.allow[0].rule.tls_ca == Path("/etc/midbox/targets-ca.pem")


def test_snmp_v1_is_off_unless_a_rule_says_so() -> None:
    assert parse_config(GOOD.encode(), Path("c.toml")).allow[0].rule.snmp_v1 is False
    text = GOOD.replace('probes = ["ssh", "http"]', 'probes = ["ssh", "snmp"]')
    on_text = text.replace('credentials = ["linux-ro"]', 'credentials = ["linux-ro"]\nsnmp_v1 = true')
    on = parse_config(on_text.encode(), Path("c.toml"))
    assert on.allow[0].rule.snmp_v1 is True
    with pytest.raises(ConfigError, match=r"rule 1 \(line 10\): snmp_v1 only applies"):
        parse(GOOD.replace('credentials = ["linux-ro"]', 'credentials = ["linux-ro"]\nsnmp_v1 = true'))
    with pytest.raises(ConfigError, match="must be bool"):
        parse(text.replace('credentials = ["linux-ro"]', 'credentials = ["linux-ro"]\nsnmp_v1 = "yes"'))


def test_tls_ca_on_a_rule_without_http_is_refused() -> None:
    text = GOOD.replace('probes = ["ssh", "http"]', 'probes = ["ssh"]').replace(
        'credentials = ["linux-ro"]', 'credentials = ["linux-ro"]\ntls_ca = "targets-ca.pem"'
    )
    with pytest.raises(ConfigError, match=r"rule 1 \(line 10\): tls_ca only applies"):
        parse(text)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ('name = "edge-01"', 'name = "edge-01\\n"'),
        ('"8000-8100"', '"\u0661-\u0662"'),
    ],
)
def test_a_trailing_newline_or_non_ascii_digits_are_refused(old: str, new: str) -> None:
    with pytest.raises(ConfigError):
        parse(GOOD.replace(old, new))


def test_ssh_rule_keys_default_to_no_sudo_and_pinned_keys() -> None:
    c = parse_config(GOOD.encode(), Path("/etc/midbox/config.toml"))
    assert c.allow[0].rule.sudo is False and c.allow[0].rule.host_keys == "pinned"


def test_ssh_rule_keys_are_read() -> None:
    text = GOOD.replace(
        'credentials = ["linux-ro"]',
        'credentials = ["linux-ro"]\nsudo = true\nhost_keys = "pin-on-first-use"',
    )
    rule = parse_config(text.encode(), Path("/etc/midbox/config.toml")).allow[0].rule
    assert rule.sudo is True and rule.host_keys == "pin-on-first-use"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('sudo = "yes"', r"'sudo' in rule 1 \(line \d+\) must be bool"),
        (
            'host_keys = "accept-new"',
            r"rule 1 \(line 10\): host_keys must be \"pinned\" or \"pin-on-first-use\"",
        ),
        ("host_keys = true", r"'host_keys' in rule 1 \(line \d+\) must be str"),
    ],
)
def test_bad_ssh_rule_keys_are_refused(line: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse(GOOD.replace('credentials = ["linux-ro"]', f'credentials = ["linux-ro"]\n{line}'))


@pytest.mark.parametrize("line", ["sudo = true", 'host_keys = "pin-on-first-use"'])
def test_ssh_rule_keys_on_a_rule_without_ssh_are_refused(line: str) -> None:
    text = GOOD.replace('probes = ["ssh", "http"]', 'probes = ["http"]')
    with pytest.raises(ConfigError, match=r"only applies to rules that allow the 'ssh' probe"):
        parse(text.replace('credentials = ["linux-ro"]', f'credentials = ["linux-ro"]\n{line}'))


MAPPED = (
    GOOD.replace('credentials = ["linux-ro"]', 'credentials = ["linux-ro", "linux-alt"]')
    + """
[credential_map.ids]
"0A1B2C3D4E5F60718293A4B5C6D7E8F9" = "linux-ro"
[credential_map.tags]
linux-prod = ["linux-alt", "linux-ro"]
"""
)


def test_credential_map_turns_ids_and_tags_into_ordered_aliases() -> None:
    c = parse_config(MAPPED.encode(), Path("/etc/midbox/config.toml"))
    m = c.credential_map
    # sys_ids are compared in lower case, as the instance writes them; tags keep their order.
    assert m.aliases(credential_id="0a1b2c3d4e5f60718293a4b5c6d7e8f9", credential_tag=None) == ("linux-ro",)
    assert m.aliases(credential_id=None, credential_tag="linux-prod") == ("linux-alt", "linux-ro")
    assert m.aliases(credential_id=None, credential_tag=None) is None
    with pytest.raises(KeyError):
        m.aliases(credential_id=None, credential_tag="windows")
    assert c.allow[0].rule.credentials == ("linux-ro", "linux-alt")  # the rule's order is kept


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (('"0A1B2C3D4E5F60718293A4B5C6D7E8F9"', '"not-a-sys-id"'), "is not a 32-character hex sys_id"),
        (('linux-prod = ["linux-alt", "linux-ro"]', 'linux-prod = ["root-everywhere"]'), "in no [[allow]]"),
        (('linux-prod = ["linux-alt", "linux-ro"]', "linux-prod = []"), "names no alias"),
        (
            ("[credential_map.tags]", "[credential_map.tags]\n'bad tag!' = 'linux-ro'"),
            "is not a credential tag",
        ),
        (
            ("[credential_map.ids]", "[credential_map]\ncolour = 1\n[credential_map.ids]"),
            "unknown key 'credential_map.colour'",
        ),
    ],
)
def test_bad_credential_maps_are_refused_at_signing(change: tuple[str, str], message: str) -> None:
    old, new = change
    assert old in MAPPED
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse(MAPPED.replace(old, new, 1))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        # Rules are counted from 1 as policy explain counts them, with the line of the key.
        (
            ("credentials = [", "credential = ["),
            "unknown key 'credential' in rule 1 (line 14); did you mean 'credentials'?",
        ),
        (("ports = [22", "port = [22"), "unknown key 'port' in rule 1 (line 13); did you mean 'ports'?"),
        (
            ("[appliance]", '[appliance]\nnmae = "x"'),
            "unknown key 'appliance.nmae' (line 4); did you mean 'name'?",
        ),
        (
            ("expires = 2027-06-01T00:00:00Z", 'expires = "2027-06-01T00:00:00Z"'),
            "'expires' (line 2) is a quoted string; write the date-time unquoted",
        ),
        (('cidr = "10.20.0.0/24"', 'cidr = "10.20.0.1/24"'), "rule 1 (line 10): cidr:"),
    ],
)
def test_messages_name_rule_line_and_the_likely_key(change: tuple[str, str], message: str) -> None:
    old, new = change
    with pytest.raises(ConfigError) as e:
        parse(GOOD.replace(old, new, 1))
    assert message in str(e.value)


def test_second_rule_is_rule_2_with_its_own_line() -> None:
    text = GOOD + '[[allow]]\ncidr = "10.30.0.0/24"\nprobes = ["tcp"]\nports = [22]\nbogus = 1\n'
    with pytest.raises(ConfigError, match=r"unknown key 'bogus' in rule 2 \(line 19\); remove it"):
        parse(text)
