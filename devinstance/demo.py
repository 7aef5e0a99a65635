"""The end-to-end demo: one appliance, the development instance, and local targets, all on loopback.

    python -m devinstance.demo [--binary dist/midbox-linux-x86_64] [--keep DIR] [--no-discovery]

It plays every role in turn, each through the real command line: the admin (key, trust root,
signed config), the host owner (credential store), the instance (jobs on the ECC queue), the
appliance (``midbox run``) and the auditor (``midbox audit verify``). Exit 0 only if every job
got the answer it should. Then the instance runs real-shaped Discovery as a ServiceNow instance does:
Shazzam, then UNIX - Classify against a local sshd and SNMP - Classify against the local snmpd, each
answer read the way a sensor reads it (``--no-discovery`` leaves that out).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path

from devinstance import cli as instance_cli
from devinstance import demo_discovery
from devinstance.demo_jobs import Expect, demo_jobs, report
from devinstance.demo_targets import (
    SNMP_AUTH,
    SNMP_PRIV,
    SNMP_USER,
    WEB_SECRET,
    WEB_USER,
    closed_port,
    snmp_target,
    web_target,
)
from devinstance.store import Store

NAME = "demo-01"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devinstance.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--binary", type=Path, help="run this frozen midbox binary instead of the source")
    parser.add_argument("--keep", type=Path, help="work in this directory and keep it afterwards")
    parser.add_argument(
        "--no-discovery",
        dest="discovery",
        action="store_false",
        help="leave out the real-shaped Discovery (Shazzam, then the classifiers it launches)",
    )
    args = parser.parse_args(argv)
    discovery: bool = args.discovery
    midbox = [str(args.binary.resolve())] if args.binary else [sys.executable, "-m", "appliance"]
    work = args.keep or Path(tempfile.mkdtemp(prefix="midbox-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    os.chmod(work, 0o700)
    try:
        # CI sets MIDBOX_REQUIRE_ALL=1: nothing of the demo may be left out for a missing daemon there.
        return _demo(midbox, work.resolve(), discovery, strict=os.environ.get("MIDBOX_REQUIRE_ALL") == "1")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def _demo(midbox: list[str], work: Path, discovery: bool = True, *, strict: bool = False) -> int:
    state = work / "state"
    admin = work / "admin"
    inst = work / "instance"
    step("the instance: a development ServiceNow instance with its own CA, on 127.0.0.1")
    instance_cli.init(inst, [NAME])
    with (
        _process(
            [
                sys.executable,
                "-m",
                "devinstance",
                "serve",
                "--dir",
                str(inst),
                "--appliance",
                NAME,
                "--heartbeat-s",
                "0",
            ],
            work / "instance.log",
        ),
        web_target() as web_port,
        snmp_target(work / "snmpd", demo_discovery.snmpd_extra_config() if discovery else "") as snmp_port,
        demo_discovery.ssh_target(work / "sshd", required=strict) if discovery else nullcontext(None) as ssh,
    ):
        url = _wait_for_instance(inst)
        print(f"    {url}")
        step("the admin, offline: an Ed25519 key, the appliance's trust root, a signed config")
        run([*midbox, "keygen", "--out", str(admin), "--name", "admin", "--no-passphrase"])
        run([*midbox, "trust", "init", "--state-dir", str(state), "--pubkey", str(admin / "admin.pub")])
        config = work / "midbox.toml"
        rules = demo_discovery.config_rules(ssh, snmp_port) if discovery else ""
        config.write_text(_config_text(url, inst / "pki", web_port, snmp_port) + rules, encoding="utf-8")
        run([*midbox, "config", "sign", str(config), "--key", str(admin / "admin.key")])
        run([*midbox, "config", "verify", str(config), "--state-dir", str(state)], show=True)
        step("the host owner: secrets go into the encrypted store from stdin, never argv")
        run(
            [
                *midbox,
                "creds",
                "add",
                "demo-web",
                "--type",
                "http-basic",
                "--user",
                WEB_USER,
                "--state-dir",
                str(state),
            ],
            stdin=WEB_SECRET + "\n",
        )
        if snmp_port:
            run(
                [
                    *midbox,
                    "creds",
                    "add",
                    "demo-snmp",
                    "--type",
                    "snmp-usm",
                    "--user",
                    SNMP_USER,
                    "--state-dir",
                    str(state),
                    "--auth-protocol",
                    "SHA-256",
                    "--priv-protocol",
                    "AES",
                ],
                stdin=f"{SNMP_AUTH}\n{SNMP_PRIV}\n",
            )
        if discovery:
            demo_discovery.add_credentials(run, midbox, state, ssh, bool(snmp_port))
        run([*midbox, "creds", "list", "--state-dir", str(state)], show=True)
        step("the appliance: midbox run (outbound mTLS only; it never listens)")
        with _process(
            [*midbox, "run", "--config", str(config), "--state-dir", str(state)], work / "appliance.log"
        ) as app:
            jobs = demo_jobs(web_port, snmp_port)
            step(f"the instance queues {len(jobs)} jobs for mid.server.{NAME}")
            ids = _enqueue(inst, jobs)
            answers = _wait_answers(inst, ids, timeout=60)
            failures = report(jobs, ids, answers)
            if discovery:
                step("the instance runs Discovery: Shazzam, then the classifiers its sensor launches")
                failures += demo_discovery.run_discovery(inst, NAME, ssh, snmp_port, closed_port())
            step("stopping the appliance (SIGTERM): it finishes, checkpoints the audit log, exits")
            app.send_signal(signal.SIGTERM)
            code = app.wait(timeout=30)
            print(f"    exit code {code}")
        step("the auditor: the audit chain, checked against the checkpoint anchored on the instance")
        run([*midbox, "audit", "pubkey", "--state-dir", str(state), "--out", str(work / "audit.pub")])
        anchor = _latest_anchor(inst, work / "anchor.xml")
        verify = [*midbox, "audit", "verify", "--state-dir", str(state), "--pubkey", str(work / "audit.pub")]
        run([*verify, "--checkpoint", str(anchor)] if anchor else verify, show=True)
        run([*midbox, "audit", "show", "--state-dir", str(state)], show=True, tail=12)
    if failures or code != 0:
        print(
            f"\ndemo FAILED: {failures} job(s) or step(s) without the expected answer, appliance exit {code}"
        )
        print(f"logs: {work}/appliance.log, {work}/instance.log")
        return 1
    done = " and real-shaped Discovery" if discovery else ""
    print(f"\ndemo OK: {len(jobs)} jobs{done} answered as expected; audit chain verified")
    return 0


def _config_text(url: str, pki: Path, web_port: int, snmp_port: int | None) -> str:
    expires = (dt.datetime.now(dt.UTC) + dt.timedelta(days=7)).strftime("%Y-%m-%dT%H:%M:%SZ")
    snmp_rule = (
        f"""
[[allow]]
cidr = "127.0.0.1/32"
probes = ["snmp"]
ports = [{snmp_port}]
credentials = ["demo-snmp"]
"""
        if snmp_port
        else ""
    )
    return f"""version = 1
expires = {expires}

[appliance]
name = "{NAME}"
max_concurrent_probes = 8

[instance]
url = "{url}"
ca_file = "{pki / "ca.pem"}"
client_cert = "{pki / f"appliance-{NAME}.crt"}"
client_key = "{pki / f"appliance-{NAME}.key"}"
poll_interval_s = 0.5

[[allow]]
cidr = "127.0.0.1/32"
probes = ["http", "tcp"]
ports = ["1-65535"]
credentials = ["demo-web"]
{snmp_rule}"""


def _enqueue(inst: Path, jobs: list[Expect]) -> list[str]:
    store = Store(inst / "instance.db")
    try:
        ids = store.enqueue(
            [
                {
                    "agent": f"mid.server.{NAME}",
                    "topic": j.topic,
                    "name": j.label,
                    "source": j.source,
                    "payload": instance_cli.params_xml([f"{k}={v}" for k, v in j.params.items()]),
                }
                for j in jobs
            ]
        )
    finally:
        store.close()
    return list(ids)


def _wait_answers(inst: Path, ids: list[str], timeout: float) -> dict[str, dict[str, str]]:
    store = Store(inst / "instance.db")
    deadline = time.monotonic() + timeout
    try:
        while True:
            rows = store.query("ecc_queue", "queue=input")
            answers = {r["response_to"]: r for r in rows if r["response_to"] in ids}
            if len(answers) == len(ids) or time.monotonic() > deadline:
                return answers
            time.sleep(0.2)
    finally:
        store.close()


def _latest_anchor(inst: Path, out: Path) -> Path | None:
    """The last audit checkpoint the appliance posted to the instance, saved as the auditor would."""
    store = Store(inst / "instance.db")
    try:
        rows = store.query("ecc_queue", "queue=input^topic=midbox.audit.checkpoint^ORDERBYsys_created_on")
    finally:
        store.close()
    if not rows:
        return None
    out.write_text(rows[-1]["payload"], encoding="utf-8")
    return out


def step(text: str) -> None:
    print(f"\n== {text}", flush=True)


def run(cmd: list[str], *, stdin: str | None = None, show: bool = False, tail: int = 0) -> None:
    words = cmd[3:] if cmd[0] == sys.executable else cmd[1:]
    shown = "midbox " + " ".join(words)
    print(f"$ {shown}")
    done = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=60, check=False)  # noqa: S603
    out = (done.stdout + done.stderr).strip().splitlines()
    if show:
        for line in out[-tail:] if tail else out:
            print(f"    {line}")
    if done.returncode != 0:
        raise SystemExit(f"command failed (exit {done.returncode}): {shown}\n" + "\n".join(out[-20:]))


@contextmanager
def _process(cmd: list[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)  # noqa: S603
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def _wait_for_instance(inst: Path) -> str:
    marker = inst / "instance.json"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if marker.exists():
            try:
                return str(json.loads(marker.read_text())["url"])
            except (ValueError, KeyError):
                pass
        time.sleep(0.1)
    raise SystemExit("the development instance did not start; see instance.log")


if __name__ == "__main__":
    raise SystemExit(main())
