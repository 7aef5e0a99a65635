"""``midbox policy explain`` on a signed config: one verdict per matching rule with its line, the scope
flags (--command, --oid, --url, --method), --json, and the credential's fit."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from appliance.cli import main as midbox_main
from appliance.errors import EXIT_USAGE
from tests.helpers import Pki
from tests.signing.helpers import write_signed_config
from tests.support.running import EXPIRES, NOT_BEFORE, config_bytes

RULES = """
[[allow]]
cidr = "127.0.0.1/32"
probes = ["ssh"]
ports = [22]
credentials = ["linux-ro"]
commands = ["uname -a", "ip -o addr show dev {iface:iface}"]

[[allow]]
cidr = "127.0.0.0/8"
probes = ["snmp", "http"]
ports = [161, 8080]
credentials = ["snmp-ro"]
oids = ["system", "interfaces"]
methods = ["GET"]
paths = ["/redfish/v1/**"]
"""


@pytest.fixture
def config(signed: tuple[Path, Ed25519PrivateKey], dev_pki: Pki) -> Path:
    admin, key = signed
    body = config_bytes("https://instance.example", dev_pki, 1, "443")
    body = body.split(b"[[allow]]")[0] + RULES.encode()
    return write_signed_config(admin, [key], body, version=1, expires=EXPIRES, not_before=NOT_BEFORE)


def explain(monkeypatch: pytest.MonkeyPatch, config: Path, state_dir: Path, *args: str) -> tuple[int, str]:
    out = io.StringIO()
    monkeypatch.setattr("sys.stdout", out)
    code = midbox_main(["policy", "explain", "--config", str(config), "--state-dir", str(state_dir), *args])
    return code, out.getvalue()


def test_every_matching_rule_is_shown_with_its_line(
    monkeypatch: pytest.MonkeyPatch, config: Path, state_dir: Path
) -> None:
    # The case: rule 1 matches loopback but not snmp; the rule the operator meant is rule 2.
    code, out = explain(
        monkeypatch, config, state_dir, "--topic", "SNMP", "--target", "127.0.0.1", "--oid", "ifTable"
    )
    assert code == 0 and out.startswith("ALLOW"), out
    code, out = explain(
        monkeypatch, config, state_dir, "--topic", "SNMP", "--target", "127.0.0.1", "--oid", "1.3.6.1.2.1.10"
    )
    assert code == 1 and out.startswith("DENY")
    assert "rule 1 (line " in out and "not probe 'snmp'" in out
    assert "rule 2 (line " in out and "OID 1.3.6.1.2.1.10 is outside its 'oids'" in out


def test_commands(monkeypatch: pytest.MonkeyPatch, config: Path, state_dir: Path) -> None:
    base = ("--topic", "SSHCommand", "--target", "127.0.0.1")
    assert explain(monkeypatch, config, state_dir, *base, "--command", "ip -o addr show dev eth0")[0] == 0
    code, out = explain(monkeypatch, config, state_dir, *base, "--command", "uname -a; id")
    assert code == 1 and "command 'uname -a; id' is not in its 'commands'" in out
    code, out = explain(monkeypatch, config, state_dir, *base)
    assert code == 1 and "no command was given" in out


def test_url_method_and_json(monkeypatch: pytest.MonkeyPatch, config: Path, state_dir: Path) -> None:
    base = ("--topic", "RESTProbe", "--target", "127.0.0.1", "--json")
    code, out = explain(
        monkeypatch, config, state_dir, *base, "--url", "http://127.0.0.1:8080/redfish/v1/Systems"
    )
    doc = json.loads(out)
    assert code == 0 and doc["allowed"] and doc["ask"] == {
        "command": None, "oids": None, "method": "GET", "path": "/redfish/v1/Systems"
    }  # fmt: skip
    assert [(r["rule"], r["allowed"]) for r in doc["addresses"][0]["rules"]] == [(1, False), (2, True)]
    code, out = explain(
        monkeypatch,
        config,
        state_dir,
        *base,
        "--url",
        "http://127.0.0.1:8080/redfish/v1/%2e%2e/x",
        "--method",
        "PUT",
    )
    doc = json.loads(out)
    assert code == 1 and not doc["allowed"]
    verdict = doc["addresses"][0]["rules"][1]
    assert verdict["scope"] and verdict["line"] and "method 'PUT'" in verdict["reason"]


def test_a_credential_that_does_not_fit_the_probe_is_warned(
    monkeypatch: pytest.MonkeyPatch, config: Path, state_dir: Path
) -> None:
    from tests.support.doctor_catches import creds_add

    creds_add(state_dir, "linux-ro", "snmp-community")
    code, out = explain(
        monkeypatch, config, state_dir, "--topic", "SSHCommand", "--target", "127.0.0.1",
        "--command", "uname -a", "--credential", "linux-ro",
    )  # fmt: skip
    assert (
        code == 0
        and "WARNING: credential 'linux-ro' is a snmp-community, which the ssh probe cannot use" in out
    )


SCRIPT = "#!/bin/sh\nuname -a\ncat /etc/os-release\n"
SCRIPT_RULES = f"""
[[allow]]
cidr = "127.0.0.1/32"
probes = ["ssh"]
ports = [22]
commands = ["ip -o addr show dev {{iface:iface}}", "sha256:{hashlib.sha256(SCRIPT.encode()).hexdigest()} {{d:path}}"]
"""


def test_a_command_with_variables_and_a_script_is_judged_as_run_judges_it(
    monkeypatch: pytest.MonkeyPatch, signed: tuple[Path, Ed25519PrivateKey], dev_pki: Pki,
    state_dir: Path, tmp_path: Path,
) -> None:  # fmt: skip
    admin, key = signed
    body = config_bytes("https://instance.example", dev_pki, 1, "443").split(b"[[allow]]")[0]
    cfg = write_signed_config(
        admin, [key], body + SCRIPT_RULES.encode(), version=1, expires=EXPIRES, not_before=NOT_BEFORE
    )
    base = ("--topic", "SSHCommand", "--target", "127.0.0.1")
    # ${iface} takes its value from --param, as run takes it from the job's parameter.
    code, out = explain(monkeypatch, cfg, state_dir, *base, "--command", "ip -o addr show dev ${iface}",
                        "--param", "iface=eth0")  # fmt: skip
    assert code == 0 and out.startswith("ALLOW"), out
    code, out = explain(monkeypatch, cfg, state_dir, *base, "--command", "ip -o addr show dev ${iface}",
                        "--param", "iface=eth0;reboot")  # fmt: skip
    assert code == 1 and out.startswith("DENY"), out
    code, out = explain(monkeypatch, cfg, state_dir, *base, "--command", "ip -o addr show dev ${iface}")
    assert code == 1 and out.startswith("DENY"), out  # no value: run refuses it too
    # A ${File:x} script is allowed by its body's SHA-256, read from --script.
    script = tmp_path / "probe.sh"
    script.write_text(SCRIPT)
    code, out = explain(monkeypatch, cfg, state_dir, *base, "--command", "${File:probe} ${dir}",
                        "--script", f"probe={script}", "--param", "dir=/etc", "--json")  # fmt: skip
    assert code == 0 and json.loads(out)["allowed"], out
    script.write_text(SCRIPT + "rm -rf /\n")
    code, out = explain(monkeypatch, cfg, state_dir, *base, "--command", "${File:probe} /etc",
                        "--script", f"probe={script}")  # fmt: skip
    assert code == 1 and "sha256:" in out, out
    # --param cannot set what another flag sets (run reads the port from the job, explain from --port).
    err = io.StringIO()
    monkeypatch.setattr("sys.stderr", err)
    code, _ = explain(monkeypatch, cfg, state_dir, *base, "--command", "id", "--param", "port=2222")
    assert code == EXIT_USAGE and "--param takes NAME=VALUE" in err.getvalue()
