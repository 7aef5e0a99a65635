"""Secrets from the real credential store, through ``midbox run``, to a real sshd and snmpd.

The operator adds the credentials with ``midbox creds add`` (secrets on stdin, the encrypted store),
pins the SSH host key with ``midbox hosts pin``, and starts ``midbox run`` with a signed config. The
SSH job names no credential (the rule's alias is tried); the SNMP jobs name theirs. The answers show
the secrets worked; the audit log names the aliases, and no secret is anywhere on disk or in the log.
"""

from __future__ import annotations

import base64
import os
import signal
from pathlib import Path

import defusedxml.ElementTree as SafeET
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from devinstance.snmpresponse import SNMPResponse
from tests.daemons import SnmpServer, SshServer
from tests.helpers import AGENT, NAME, Pki, dev_instance, params
from tests.signing.helpers import install_trust
from tests.support.cli import run_process
from tests.support.running import EXPIRES, appliance, audit_entries, signed_config, wait_answer

pytestmark = pytest.mark.daemons

SYS_DESCR = "1.3.6.1.2.1.1.1.0"


def config_bytes(url: str, p: Pki, ssh: SshServer, snmp: SnmpServer) -> bytes:
    return f"""version = 1
expires = {EXPIRES.strftime("%Y-%m-%dT%H:%M:%SZ")}

[appliance]
name = "{NAME}"

[instance]
url = "{url}"
ca_file = "{p.ca.cert}"
client_cert = "{p.client.cert}"
client_key = "{p.client.key}"
poll_interval_s = 0.1

[[allow]]
cidr = "127.0.0.1/32"
probes = ["ssh"]
ports = [{ssh.port}]
credentials = ["ssh-ops"]

[[allow]]
cidr = "127.0.0.1/32"
probes = ["snmp"]
ports = [{snmp.port}]
credentials = ["snmp-v3", "snmp-v2"]
""".encode()


def add(state_dir: Path, alias: str, ctype: str, stdin: str, *extra: str) -> None:
    done = run_process(
        "creds", "add", alias, "--type", ctype, *extra, "--state-dir", str(state_dir), stdin=stdin
    )
    assert done.returncode == 0, done.stderr
    assert alias not in done.stderr


def secrets_of(ssh: SshServer, snmp: SnmpServer) -> list[bytes]:
    plain = [ssh.password, snmp.community, snmp.v3_auth, snmp.v3_priv]
    return [
        form for s in plain for form in (s.encode(), base64.b64encode(s.encode()), s.encode().hex().encode())
    ]


def files_holding(root: Path, needles: list[bytes]) -> list[str]:
    found = []
    for directory, _, files in os.walk(root):
        for name in files:
            data = (Path(directory) / name).read_bytes()
            found += [f"{Path(directory, name).relative_to(root)}" for n in needles if n in data]
    return found


def test_stored_credentials_reach_sshd_and_snmpd_through_midbox_run(
    dev_pki: Pki,
    tmp_path: Path,
    state_dir: Path,
    sshd: SshServer,
    snmpd: SnmpServer,
) -> None:
    admin_key = Ed25519PrivateKey.generate()
    install_trust(state_dir, [admin_key])
    add(state_dir, "ssh-ops", "ssh-password", f"{sshd.password}\n", "--user", sshd.user)
    add(state_dir, "snmp-v2", "snmp-community", f"{snmpd.community}\n")
    add(
        state_dir, "snmp-v3", "snmp-usm", f"{snmpd.v3_auth}\n{snmpd.v3_priv}\n",
        "--user", snmpd.v3_user, "--auth-protocol", "SHA-256", "--priv-protocol", "AES",
    )  # fmt: skip
    pinned = run_process(
        "hosts", "pin", f"127.0.0.1:{sshd.port}", str(sshd.host_key_pub), "--state-dir", str(state_dir)
    )
    assert pinned.returncode == 0, pinned.stderr
    log = tmp_path / "run.log"
    with dev_instance(dev_pki, tmp_path / "db.sqlite") as instance:
        store = instance.state.store
        config = signed_config(
            tmp_path / "admin", [admin_key], config_bytes(instance.url, dev_pki, sshd, snmpd)
        )
        with appliance(config, state_dir, log) as proc:
            [ssh_job, v3_job, v2_job] = store.enqueue(
                [
                    {
                        "agent": AGENT, "topic": "SSHCommand", "name": "id -un", "source": "127.0.0.1",
                        "payload": params(port=str(sshd.port)),
                    },
                    {
                        "agent": AGENT, "topic": "SNMP", "name": "snmp", "source": "127.0.0.1",
                        "payload": params(
                            port=str(snmpd.port), version="3", credential="snmp-v3", oid_spec_list=f"get {SYS_DESCR}"
                        ),
                    },
                    {
                        "agent": AGENT, "topic": "SNMP", "name": "snmp", "source": "127.0.0.1",
                        "payload": params(
                            port=str(snmpd.port), version="2c", credential="snmp-v2", oid_spec_list=f"get {SYS_DESCR}"
                        ),
                    },
                ]
            )  # fmt: skip
            answers = {job: wait_answer(store, job, timeout=30) for job in (ssh_job, v3_job, v2_job)}
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0, log.read_text()[-2000:]
    for job, answer in answers.items():
        assert answer["error_string"] == "", (job, answer["error_string"], log.read_text()[-2000:])
    ssh_result = SafeET.fromstring(answers[ssh_job]["payload"])
    assert ssh_result.findtext(".//stdout") == f"{sshd.user}\n"
    for job in (v3_job, v2_job):
        # Read as ServiceNow's sensors read it: by MIB name, from the <snmp> tree.
        response = SNMPResponse.from_payload(answers[job]["payload"])
        assert (response.get_oid_text("iso.org.dod.internet.mgmt.mib-2.system.sysDescr") or "").startswith(
            "Linux"
        )
    # The audit log names each credential used, by alias and type, for its job.
    used = {
        (e["fields"]["alias"], e["fields"]["job"])
        for e in audit_entries(state_dir)
        if e["event"] == "credential.used"
    }
    assert ("snmp-v3", v3_job) in used and ("snmp-v2", v2_job) in used
    attempts = [e["fields"] for e in audit_entries(state_dir) if e["event"] == "credential.attempt"]
    assert any(a.get("alias") == "ssh-ops" for a in attempts), attempts
    # No secret in any file of the state dir (the store is encrypted), the instance's records or the log.
    assert files_holding(tmp_path, secrets_of(sshd, snmpd)) == []
