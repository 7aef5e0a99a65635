"""The demo's Discovery pieces that can be checked without the appliance's real-shaped answers."""

from __future__ import annotations

import tomllib
from pathlib import Path

from appliance.config import parse_config
from devinstance import demo_discovery
from devinstance.sshd import SshServer

ROOT = Path(__file__).resolve().parents[2]


def _server(port: int) -> SshServer:
    p = Path("/nonexistent")
    return SshServer(port, "demo-user", "pw", p, p, p, "pp", p)


def test_config_rules_allow_ssh_and_snmp_by_rule_aliases_and_map_the_tag() -> None:
    text = demo_discovery.config_rules(_server(2201), 16101)
    doc = tomllib.loads(text)
    ssh_rule, snmp_rule = doc["allow"]
    assert ssh_rule == {
        "cidr": "127.0.0.1/32",
        "probes": ["ssh"],
        "ports": [2201],
        "credentials": ["demo-ssh"],
    }
    assert snmp_rule["ports"] == [16101] and snmp_rule["credentials"] == ["demo-snmp", "demo-snmp-v2c"]
    assert doc["credential_map"] == {"tags": {demo_discovery.SSH_TAG: ["demo-ssh"]}}
    assert "pw" not in text  # no secret in the signed config
    # The appliance's own strict parser accepts the rules and resolves the tag to the alias.
    header = (
        'version = 1\nexpires = 2030-01-01T00:00:00Z\n[appliance]\nname = "demo-01"\n[instance]\n'
        'url = "https://127.0.0.1:1"\nca_file = "ca.pem"\nclient_cert = "c.pem"\nclient_key = "k.pem"\n'
    )
    parsed = parse_config((header + text).encode(), Path("/demo/midbox.toml"))
    assert parsed.credential_map.aliases(credential_id=None, credential_tag=demo_discovery.SSH_TAG) == (
        "demo-ssh",
    )


def test_without_sshd_only_the_snmp_rule_is_added() -> None:
    doc = tomllib.loads(demo_discovery.config_rules(None, 16101))
    assert [r["probes"] for r in doc["allow"]] == [["snmp"]] and "credential_map" not in doc
    assert demo_discovery.config_rules(None, None) == ""


def test_the_sshd_starter_has_one_copy() -> None:
    text = (ROOT / "tests" / "daemons.py").read_text(encoding="utf-8")
    assert "sshd_config" not in text and "useradd" not in text, (
        "start sshd through devinstance.sshd.run_sshd: the tests and the demo share one copy"
    )
