"""Rule scopes: each allows its exact match and refuses every near miss (issue 17, item 1)."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

import pytest

from appliance.config.parse import parse_config
from appliance.errors import ConfigError
from hardening.policy import AllowRule, Policy, PortRange
from hardening.scopes import (
    Ask,
    CommandScope,
    CommandTemplate,
    PathScope,
    Scopes,
    ScopeSyntaxError,
    normalise_path,
    oid_within,
)

COMMANDS = CommandScope.parse(
    (
        "uname -a",
        "ip -o addr show dev {iface:[a-z0-9.-]{1,15}}",
        "cat /proc/net/{file:word}",
        "awk '{{print $1}}' /proc/cpuinfo",
    )
)


@pytest.mark.parametrize(
    "command",
    ["uname -a", "ip -o addr show dev eth0.12", "cat /proc/net/dev", "awk '{print $1}' /proc/cpuinfo"],
)
def test_exact_and_template_matches_are_allowed(command: str) -> None:
    assert COMMANDS.allows(command)


@pytest.mark.parametrize(
    "command",
    [
        "uname -a; id",
        "uname -a && id",
        "uname -a || id",
        "uname -a | sh",
        "uname -a $(id)",
        "uname -a `id`",
        "uname -a > /etc/passwd",
        "uname -a\nid",
        "uname -a\x00id",
        "uname -a ",
        " uname -a",
        "uname  -a",
        "uname -a -r",
        "uname",
        "UNAME -a",
        "ip -o addr show dev eth0;id",
        "ip -o addr show dev eth0 && id",
        "ip -o addr show dev $(id)",
        "ip -o addr show dev `id`",
        "ip -o addr show dev eth0|sh",
        "ip -o addr show dev eth0>x",
        "ip -o addr show dev 'eth0'",
        'ip -o addr show dev "eth0"',
        "ip -o addr show dev eth0 extra",
        "ip -o addr show dev eth 0",
        "ip -o addr show dev eth0\n",
        "ip -o addr show dev -eth0",
        "ip -o addr show dev abcdefghijklmnop",  # 16 characters, over the class's 15
        "ip -o addr show dev ",
        "cat /proc/net/../../etc/shadow",
        "cat /proc/net/dev*",
        "cat /proc/net/~root",
    ],
)
def test_near_misses_are_refused(command: str) -> None:
    assert not COMMANDS.allows(command)


@pytest.mark.parametrize(
    "bad", [";", "&", "|", "$", "`", "'", '"', " ", "\\", ">", "<", "*", "?", "(", "~", "#", "!", "{", "\t"]
)
def test_a_placeholder_class_can_never_name_a_metacharacter(bad: str) -> None:
    with pytest.raises(ScopeSyntaxError):
        CommandTemplate.parse("ls {d:[a-z" + bad + "]{1,5}}")


@pytest.mark.parametrize(
    "bad",
    [
        "ls {d:.*}",
        "ls {d:[a-z]+}",
        "ls {d:[a-z]{0,5}}",
        "ls {d:[a-z]{1,999}}",
        "ls {d:regex}",
        "ls {d}",
        "a }",
    ],
)
def test_no_raw_regex_and_no_unbounded_placeholder(bad: str) -> None:
    with pytest.raises(ScopeSyntaxError):
        CommandTemplate.parse(bad)


def test_every_named_type_is_safe_and_refuses_a_leading_dash() -> None:
    for kind in ("int", "word", "iface", "host", "addr", "path"):
        t = CommandTemplate.parse(f"x {{v:{kind}}}")
        assert not t.matches("x -1") and not t.matches("x 1;id") and not t.matches("x ")


def test_oids_are_compared_by_arc_not_by_string_prefix() -> None:
    system = (1, 3, 6, 1, 2, 1, 1)
    assert oid_within((1, 3, 6, 1, 2, 1, 1, 1, 0), system)
    assert oid_within(system, system)
    assert not oid_within((1, 3, 6, 1, 2, 1, 10), system)  # "1.3.6.1.2.1.10" starts with "1.3.6.1.2.1.1"
    assert not oid_within((1, 3, 6, 1, 2, 1), system)  # the parent: one arc outside
    assert not oid_within((1, 3, 6, 1, 2, 1, 2, 1), system)


PATHS = PathScope.parse(("/api/now/table/cmdb_ci", "/redfish/v1/**"))


@pytest.mark.parametrize(
    "path",
    ["/api/now/table/cmdb_ci", "/redfish/v1", "/redfish/v1/", "/redfish/v1/Systems/1", "/redfish/v1/./x"],
)
def test_paths_inside(path: str) -> None:
    assert PATHS.allows(normalise_path(path))


@pytest.mark.parametrize(
    "path",
    [
        "/api/now/table/cmdb_ci/x",
        "/api/now/table/cmdb_ci_server",
        "/api/now/table",
        "/redfish/v10",
        "/redfish/v1/../../admin",
        "/redfish/v1/%2e%2e/%2E%2E/admin",
        "/redfish/v1/.%2e/.%2E/admin",
        "/redfish/v1/Systems/../../../etc",
        "/redfish/v1%2fSystems/../../admin",
        "/redfish/v1/..;/admin",
        "/redfish/v1/%252e%252e/admin",
        "/redfish/v1\\..\\admin",
        "/Redfish/v1",
    ],
)
def test_paths_outside_and_dot_tricks(path: str) -> None:
    scopes = Scopes(paths=PATHS, methods=frozenset({"GET"}))
    assert scopes.refusal("http", Ask(method="GET", path=path)) is not None


def test_method_outside_is_refused() -> None:
    scopes = Scopes(methods=frozenset({"GET", "HEAD"}))
    assert scopes.refusal("http", Ask(method="GET", path="/")) is None
    assert "method 'DELETE'" in (scopes.refusal("http", Ask(method="DELETE", path="/")) or "")


def _rule(scopes: Scopes, probes: tuple[str, ...] = ("ssh",)) -> AllowRule:
    return AllowRule(
        networks=(ipaddress.ip_network("10.0.0.0/8"),),
        hosts=(),
        probes=frozenset(probes),
        ports=(PortRange(1, 65535),),
        credentials=(),
        scopes=scopes,
        line=7,
    )


def test_a_scoped_rule_refuses_naming_the_rule_and_a_later_rule_may_allow() -> None:
    address = ipaddress.ip_address("10.0.0.5")
    narrow = _rule(Scopes(commands=CommandScope.parse(("uname -a",))))
    policy = Policy([narrow])
    d = policy.scoped(Ask(command="id")).check(probe="ssh", address=address, port=22)
    assert not d.allowed and d.scope is not None
    assert "rule 1 (line 7)" in d.reason and "command 'id' is not in its 'commands'" in d.reason
    assert policy.scoped(Ask(command="uname -a")).check(probe="ssh", address=address, port=22).allowed
    # Unbound (no job to judge), a scoped rule fails closed.
    assert not policy.check(probe="ssh", address=address, port=22).allowed
    wide = Policy([narrow, _rule(Scopes())])
    d = wide.scoped(Ask(command="id")).check(probe="ssh", address=address, port=22)
    assert d.allowed and d.rule == 2
    verdicts = wide.scoped(Ask(command="id")).verdicts(probe="ssh", address=address, port=22)
    assert [(v.rule, v.allowed, v.scope) for v in verdicts] == [(1, False, True), (2, True, False)]


def test_scopes_apply_only_to_their_probe() -> None:
    address = ipaddress.ip_address("10.0.0.5")
    rule = _rule(Scopes(commands=CommandScope.parse(("uname -a",))), probes=("ssh", "tcp"))
    assert Policy([rule]).check(probe="tcp", address=address, port=22).allowed


# --- the config keys ------------------------------------------------------------------------------

HEAD = """version = 1
expires = 2099-01-01T00:00:00Z
[appliance]
name = "t"
[instance]
url = "https://x.example"
ca_file = "ca.pem"
basic_auth_credential = "b"
"""


def parse(rule: str) -> AllowRule:
    return (
        parse_config((HEAD + '[[allow]]\ncidr = "10.0.0.0/8"\n' + rule).encode(), Path("c.toml"))
        .allow[0]
        .rule
    )


def test_config_scopes_parse_with_mib_names() -> None:
    r = parse(
        'probes = ["ssh", "snmp", "http"]\nports = [22, 161, 443]\n'
        'commands = ["uname -a"]\noids = ["system", "1.3.6.1.2.1.2", "mib-2.ip"]\n'
        'methods = ["GET"]\npaths = ["/redfish/v1/**"]\n'
    )
    assert r.scopes.oids == ((1, 3, 6, 1, 2, 1, 1), (1, 3, 6, 1, 2, 1, 2), (1, 3, 6, 1, 2, 1, 4))
    assert r.scopes.methods == frozenset({"GET"}) and r.scopes.commands is not None and r.line == 9


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        (
            'probes = ["snmp"]\nports = [161]\ncommands = ["id"]\n',
            "commands only applies to rules that allow the 'ssh'",
        ),
        ('probes = ["ssh"]\nports = [22]\ncommands = []\n', "is empty, which would allow nothing"),
        (
            'probes = ["ssh"]\nports = [22]\ncommands = ["ls {d:[a-z;]{1,3}}"]\n',
            "'commands' in rule 1 (line 13)",
        ),
        ('probes = ["snmp"]\nports = [161]\noids = ["noSuchMib"]\n', "not an OID or a known MIB name"),
        ('probes = ["http"]\nports = [80]\nmethods = ["get"]\n', "write it in capitals"),
        ('probes = ["http"]\nports = [80]\npaths = ["/a/../.."]\n', "climbs above the root"),
        ('probes = ["http"]\nports = [80]\npaths = ["/a/*"]\n', "may end in '/**'"),
    ],
)
def test_config_scope_mistakes_name_the_fix(rule: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse(rule)


def test_the_examples_of_docs_policy_md_parse_and_allow_discovery() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "policy.md").read_text()
    blocks = re.findall(r"```toml\n(.*?)```", doc, re.S)
    assert len(blocks) == 3
    ssh = parse(blocks[0].split('cidr = "10.20.0.0/24"\n', 1)[1])
    assert ssh.scopes.commands is not None
    for ok in ("uname -a", "ip -o addr show dev eth0", 'rpm -qa --qf "%{NAME}|%{VERSION}\\n"'):
        assert ssh.scopes.commands.allows(ok), ok
    assert not ssh.scopes.commands.allows("uname -a; reboot")
    snmp = parse('probes = ["snmp"]\nports = [161]\n' + blocks[1])
    assert (
        snmp.scopes.refusal("snmp", Ask(oids=((1, 3, 6, 1, 2, 1, 1, 1, 0), (1, 3, 6, 1, 2, 1, 31, 1, 1))))
        is None
    )
    http = parse('probes = ["http"]\nports = [443]\n' + blocks[2])
    assert http.scopes.refusal("http", Ask(method="GET", path="/redfish/v1/Systems")) is None
    assert http.scopes.refusal("http", Ask(method="PATCH", path="/redfish/v1/Systems")) is not None
