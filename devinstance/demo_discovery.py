"""The demo's real-shaped Discovery: Shazzam, then UNIX - Classify and SNMP - Classify, as an instance does.

Each piece is one function that ``devinstance.demo`` calls (unless ``--no-discovery``). Everything it
needs is started by the demo itself: a local OpenSSH sshd (``devinstance.sshd``, the tests' copy), the
demo's snmpd, the stored credentials, the pinned host key and the signed config's rule and credential map.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from devinstance.discovery.sequence import CredentialChoice, DiscoveryPlan, discover
from devinstance.discovery.shapes import SNMP_CLASSIFY, UNIX_CLASSIFY, default_port_probes
from devinstance.sshd import DaemonError, SshServer, run_sshd
from devinstance.store import Store

SSH_ALIAS = "demo-ssh"
SNMP_V2_ALIAS = "demo-snmp-v2c"
SNMP_COMMUNITY = "demo-ro-community"  # the demo snmpd's own read-only community, loopback only
SSH_TAG = "demo-unix"  # the credential_tag the instance puts on UNIX - Classify; mapped in the config

Run = Callable[..., None]


@contextmanager
def ssh_target(directory: Path, *, required: bool = False) -> Iterator[SshServer | None]:
    """The tests' sshd on a loopback port, or None (with a note) where it cannot run.

    ``required`` (CI sets MIDBOX_REQUIRE_ALL=1) turns "left out" into a failure.
    """
    with ExitStack() as stack:
        server: SshServer | None = None
        if shutil.which("sshd", path="/usr/sbin:/usr/bin:/sbin:/bin") is None:
            reason = "sshd is not installed (apt-get install openssh-server)"
        else:
            try:
                server = stack.enter_context(run_sshd(directory, preferred_port=2222))
            except DaemonError as e:
                reason = f"sshd could not start: {e}"
        if server is None:
            if required:
                raise DaemonError(f"{reason}; the demo's UNIX - Classify needs it")
            print(f"    ({reason}: UNIX - Classify is left out)")
        yield server


def snmpd_extra_config() -> str:
    """A v2c community for Shazzam's SNMP scanner and the classifier (the v3 user stays as it is)."""
    return f"rocommunity {SNMP_COMMUNITY} 127.0.0.1\n"


def add_credentials(run: Run, midbox: list[str], state: Path, ssh: SshServer | None, snmp: bool) -> None:
    """The host owner's part: the SSH password and the v2c community go into the store from stdin."""
    if ssh is not None:
        run(
            [*midbox, "creds", "add", SSH_ALIAS, "--type", "ssh-password", "--user", ssh.user,
             "--state-dir", str(state)],
            stdin=ssh.password + "\n",
        )  # fmt: skip
        # Pinned before first use: the admin read the key from the host, not from the network.
        run(
            [
                *midbox,
                "hosts",
                "pin",
                f"127.0.0.1:{ssh.port}",
                str(ssh.host_key_pub),
                "--state-dir",
                str(state),
            ]
        )
    if snmp:
        run(
            [*midbox, "creds", "add", SNMP_V2_ALIAS, "--type", "snmp-community", "--state-dir", str(state)],
            stdin=SNMP_COMMUNITY + "\n",
        )


def config_rules(ssh: SshServer | None, snmp_port: int | None) -> str:
    """Allow rules and the credential map the real-shaped jobs need (no alias comes from the instance)."""
    text = ""
    if ssh is not None:
        text += f"""
[[allow]]
cidr = "127.0.0.1/32"
probes = ["ssh"]
ports = [{ssh.port}]
credentials = ["{SSH_ALIAS}"]
"""
    if snmp_port:
        text += f"""
[[allow]]
cidr = "127.0.0.1/32"
probes = ["snmp"]
ports = [{snmp_port}]
credentials = ["demo-snmp", "{SNMP_V2_ALIAS}"]
"""
    if ssh is not None:
        # credential_tag (or a credential_id) from the instance -> local aliases, tried in order.
        text += f"""
[credential_map.tags]
"{SSH_TAG}" = ["{SSH_ALIAS}"]
"""
    return text


def run_discovery(inst: Path, agent: str, ssh: SshServer | None, snmp_port: int | None, closed: int) -> int:
    """Shazzam over 127.0.0.1, then the classifiers its sensor launches; returns the number of failures."""
    plan = DiscoveryPlan(
        agent=agent,
        ranges=("127.0.0.1",),
        port_probes=default_port_probes(
            ssh=ssh.port if ssh else closed,
            snmp=snmp_port or closed,
            http=closed,
            https=closed,
            generic=closed,
        ),
        ssh=CredentialChoice(credential_tag=SSH_TAG),
        snmp=CredentialChoice(),  # no hint: the rule's aliases are tried in order
        timeout_s=90,
    )
    store = Store(inst / "instance.db")
    try:
        report = discover(store, plan, progress=lambda text: print(f"    -> {text}", flush=True))
    finally:
        store.close()
    for line in report.lines():
        print(f"    {line[:150]}")
    launched = {s.label for s in report.steps}
    wanted = {"Shazzam"} | ({UNIX_CLASSIFY} if ssh else set()) | ({SNMP_CLASSIFY} if snmp_port else set())
    missing = wanted - launched
    for label in sorted(missing):
        print(f"    MISSING  {label} (the Shazzam sensor did not launch it)")
    return sum(not s.ok for s in report.steps) + len(missing)
