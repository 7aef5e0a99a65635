"""Memory of a running appliance (not part of the test run).

    python -m tests.bench.bench_footprint [--binary dist/midbox-linux-x86_64] [--idle 60] [--jobs 1000] [--runs 3]

Per run: a fresh state dir with stored SSH and SNMP credentials and a pinned host key, the development
instance, a real sshd and snmpd and an HTTP target on loopback; ``midbox run`` answers one heartbeat,
then idles ``--idle`` seconds (VmRSS read then: "idle RSS"), then drains ``--jobs`` mixed jobs (HTTP,
SSH, SNMP v2c, SNMP v3 authPriv, TCP scan, in turn) and VmRSS is read again. VmRSS is the Python
process's own (for the frozen binary: the bootloader's child). Prints medians over the runs.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from devinstance import cli as instance_cli
from devinstance.store import Store
from tests.bench.instance import start_instance
from tests.daemons import SnmpServer, SshServer, run_snmpd, run_sshd

AGENT = "mid.server.edge-01"


def _params(**values: str) -> str:
    return (
        "<parameters>"
        + "".join(f'<parameter name="{k}" value="{v}"/>' for k, v in values.items())
        + ("</parameters>")
    )


def _jobs(n: int, ssh: SshServer, snmp: SnmpServer, http_url: str) -> list[dict[str, str]]:
    kinds = [
        {"topic": "RESTProbe", "payload": _params(url=f"{http_url}/hello")},
        {
            "topic": "SSHCommand",
            "name": "uname -a",
            "source": "127.0.0.1",
            "payload": _params(port=str(ssh.port)),
        },
        {
            "topic": "SNMP",
            "name": "snmp",
            "source": "127.0.0.1",
            "payload": _params(
                port=str(snmp.port), version="2c", credential="v2", oid_spec_list="walk 1.3.6.1.2.1.1"
            ),
        },
        {
            "topic": "SNMP",
            "name": "snmp",
            "source": "127.0.0.1",
            "payload": _params(
                port=str(snmp.port), version="3", credential="v3", oid_spec_list="walk 1.3.6.1.2.1.1"
            ),
        },
        {
            "topic": "Shazzam",
            "name": "Shazzam",
            "payload": _params(ranges="127.0.0.1", ports=f"{ssh.port},{snmp.port}"),
        },
    ]
    return [{"agent": AGENT, **kinds[i % len(kinds)]} for i in range(n)]


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def _python_pid(pid: int) -> int:
    # The one-file binary's bootloader forks the Python process: measure the deepest descendant.
    while True:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        if not kids:
            return pid
        pid = int(kids[0])


def _wait_done(store: Store, ids: list[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    want = set(ids)
    while time.monotonic() < deadline:
        rows = store.query("ecc_queue", "queue=input", fields=["response_to"])
        if want <= {r["response_to"] for r in rows}:
            return
        time.sleep(0.2)
    raise RuntimeError(f"jobs not answered within {timeout} s")


@contextlib.contextmanager
def _http_target() -> Iterator[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.support.target_main"], stdout=subprocess.PIPE, text=True
    )
    try:
        yield proc.stdout.readline().strip()  # type: ignore[union-attr]
    finally:
        proc.terminate()
        proc.wait(10)


def one_run(midbox: list[str], tmp: Path, idle: float, jobs: int, log: Path | None) -> tuple[float, float]:
    def cli(*args: str, stdin: str | None = None) -> None:
        subprocess.run([*midbox, *args], check=True, capture_output=True, text=True, input=stdin)

    inst = tmp / "instance"
    instance_cli.init(inst, ["edge-01"])
    server, url = start_instance(inst)
    pki = inst / "pki"
    state = tmp / "state"
    with run_sshd(tmp / "sshd") as ssh, run_snmpd(tmp / "snmpd") as snmp, _http_target() as http_url:
        expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 86400))
        config = tmp / "midbox.toml"
        config.write_text(
            f'version = 1\nexpires = {expires}\n[appliance]\nname = "edge-01"\n[instance]\nurl = "{url}"\n'
            f'ca_file = "{pki / "ca.pem"}"\nclient_cert = "{pki / "appliance-edge-01.crt"}"\n'
            f'client_key = "{pki / "appliance-edge-01.key"}"\npoll_interval_s = 1\n'
            f'[[allow]]\ncidr = "127.0.0.0/8"\nprobes = ["http"]\nports = ["1-65535"]\n'
            f'[[allow]]\ncidr = "127.0.0.1/32"\nprobes = ["ssh"]\nports = [{ssh.port}]\ncredentials = ["ops"]\n'
            f'[[allow]]\ncidr = "127.0.0.1/32"\nprobes = ["snmp"]\nports = [{snmp.port}]\ncredentials = ["v3", "v2"]\n'
            f'[[allow]]\ncidr = "127.0.0.1/32"\nprobes = ["tcp"]\nports = [{ssh.port}, {snmp.port}]\n'
        )
        cli("keygen", "--out", str(tmp / "admin"), "--name", "a", "--no-passphrase")
        cli("trust", "init", "--state-dir", str(state), "--pubkey", str(tmp / "admin" / "a.pub"))
        cli("config", "sign", str(config), "--key", str(tmp / "admin" / "a.key"))
        cli("creds", "add", "ops", "--type", "ssh-password", "--user", ssh.user, "--state-dir", str(state),
            stdin=f"{ssh.password}\n")  # fmt: skip
        cli(
            "creds",
            "add",
            "v2",
            "--type",
            "snmp-community",
            "--state-dir",
            str(state),
            stdin=f"{snmp.community}\n",
        )
        cli("creds", "add", "v3", "--type", "snmp-usm", "--user", snmp.v3_user, "--auth-protocol", "SHA-256",
            "--priv-protocol", "AES", "--state-dir", str(state), stdin=f"{snmp.v3_auth}\n{snmp.v3_priv}\n")  # fmt: skip
        cli("hosts", "pin", f"127.0.0.1:{ssh.port}", str(ssh.host_key_pub), "--state-dir", str(state))
        store = Store(inst / "instance.db")
        err = log.open("wb") if log else subprocess.DEVNULL
        proc = subprocess.Popen(
            [*midbox, "run", "-q", "--config", str(config), "--state-dir", str(state)], stderr=err
        )
        try:
            [hb] = store.enqueue([{"agent": AGENT, "topic": "HeartbeatProbe", "priority": "0"}])
            _wait_done(store, [hb], 60)
            time.sleep(idle)
            pid = _python_pid(proc.pid)
            idle_rss = _rss_kib(pid)
            if jobs:
                _wait_done(store, store.enqueue(_jobs(jobs, ssh, snmp, http_url)), 600)
            busy_rss = _rss_kib(pid)
            errors = store.query("ecc_queue", "queue=input^error_string!=", fields=["error_string"])
            if errors:
                print(f"  {len(errors)} jobs answered with an error, e.g. {errors[0]['error_string'][:200]}")
        finally:
            # The bootloader passes SIGTERM on to the Python process; stop both as systemd would.
            with contextlib.suppress(ProcessLookupError, FileNotFoundError):
                os.kill(_python_pid(proc.pid), signal.SIGTERM)
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
            store.close()
            server.send_signal(signal.SIGTERM)
            server.wait(10)
    return idle_rss / 1024, busy_rss / 1024


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", type=Path, help="the frozen binary (default: python -m appliance)")
    ap.add_argument("--idle", type=float, default=60.0)
    ap.add_argument("--jobs", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--log", type=Path, help="the appliance's stderr goes here (default: discarded)")
    args = ap.parse_args()
    midbox = [str(args.binary.resolve())] if args.binary else [sys.executable, "-m", "appliance"]
    idle, busy = [], []
    for i in range(args.runs):
        a, b = one_run(
            midbox, Path(tempfile.mkdtemp(prefix=f"footprint-{i}-")), args.idle, args.jobs, args.log
        )
        print(f"run {i + 1}: idle {a:.1f} MiB, after {args.jobs} mixed jobs {b:.1f} MiB", flush=True)
        idle.append(a)
        busy.append(b)
    print(
        f"median over {args.runs}: idle RSS after {args.idle:.0f} s {statistics.median(idle):.1f} MiB; "
        f"RSS after {args.jobs} mixed jobs {statistics.median(busy):.1f} MiB"
    )


if __name__ == "__main__":
    main()
