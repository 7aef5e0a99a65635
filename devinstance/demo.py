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
import base64
import datetime as dt
import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

from devinstance import cli as instance_cli
from devinstance import demo_discovery
from devinstance.store import Store

NAME = "demo-01"
WEB_USER = "demo"
WEB_SECRET = "demo-web-secret-not-for-production"  # noqa: S105 - the demo's own local target
SNMP_USER = "demo-snmp"
SNMP_AUTH = "demo-snmp-auth-pass"
SNMP_PRIV = "demo-snmp-priv-pass"


@dataclass(frozen=True)
class Expect:
    label: str
    topic: str
    source: str
    params: dict[str, str]
    ok: bool
    shows: str  # a piece of text the result (payload or error) must contain


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
        _web_target() as web_port,
        _snmp_target(work / "snmpd", demo_discovery.snmpd_extra_config() if discovery else "") as snmp_port,
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
            jobs = _jobs(web_port, snmp_port)
            step(f"the instance queues {len(jobs)} jobs for mid.server.{NAME}")
            ids = _enqueue(inst, jobs)
            answers = _wait_answers(inst, ids, timeout=60)
            failures = _report(jobs, ids, answers)
            if discovery:
                step("the instance runs Discovery: Shazzam, then the classifiers its sensor launches")
                failures += demo_discovery.run_discovery(inst, NAME, ssh, snmp_port, _closed_port())
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


def _jobs(web_port: int, snmp_port: int | None) -> list[Expect]:
    web = f"http://127.0.0.1:{web_port}"
    jobs = [
        Expect("heartbeat", "HeartbeatProbe", "", {}, True, "mid_operational_state"),
        Expect(
            "HTTP GET, allowed",
            "RESTProbe",
            "127.0.0.1",
            {"url": f"{web}/"},
            True,
            "hello from a local target",
        ),
        Expect(
            "HTTP with a stored credential",
            "RESTProbe",
            "127.0.0.1",
            {"url": f"{web}/private", "credential": "demo-web"},
            True,
            "welcome, demo",
        ),
        Expect(
            "HTTP to the cloud metadata address",
            "RESTProbe",
            "169.254.169.254",
            {"url": "http://169.254.169.254/latest/meta-data/"},
            False,
            "denied",
        ),
        Expect(
            "TCP scan (discovery's first phase)",
            "Shazzam",
            "127.0.0.1",
            {"ranges": "127.0.0.1", "ports": f"{web_port},{_closed_port()}"},
            True,
            "open",
        ),
        Expect(
            "a topic this appliance refuses", "Command", "127.0.0.1", {"name": "id"}, False, "not permitted"
        ),
        Expect("a topic nobody knows", "NoSuchProbe", "", {}, False, "not permitted"),
    ]
    if snmp_port:
        jobs.append(
            Expect(
                "SNMPv3 get (authPriv, stored USM keys)",
                "SNMP",
                "127.0.0.1",
                {
                    "oid_spec_list": "get 1.3.6.1.2.1.1.6.0",
                    "version": "3",
                    "port": str(snmp_port),
                    "credential": "demo-snmp",
                },
                True,
                "midbox demo rack",
            )
        )
    return jobs


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


def _report(jobs: list[Expect], ids: list[str], answers: dict[str, dict[str, str]]) -> int:
    failures = 0
    for job, sys_id in zip(jobs, ids, strict=True):
        row = answers.get(sys_id)
        if row is None:
            failures += 1
            print(f"    MISSING  {job.label}")
            continue
        error = row["error_string"]
        seen = error or row["payload"]
        good = (not error) == job.ok and job.shows in seen
        failures += not good
        verdict = ("ok   " if job.ok else "error") if good else "WRONG"
        detail = error or _summary(row["payload"])
        print(f"    {verdict}  {job.label:<40} {detail[:90]}")
    return failures


def _summary(payload: str) -> str:
    return " ".join(payload.split())[:200]


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


class _WebTarget(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        expected = "Basic " + base64.b64encode(f"{WEB_USER}:{WEB_SECRET}".encode()).decode()
        if self.path == "/private":
            if self.headers.get("Authorization") != expected:
                self._send(401, b"who are you?")
                return
            self._send(200, b"welcome, demo")
            return
        self._send(200, b"hello from a local target")

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def _web_target() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _WebTarget)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def _snmp_target(directory: Path, extra_config: str = "") -> Iterator[int | None]:
    """net-snmp's snmpd on a loopback port with one v3 user, if snmpd is installed."""
    snmpd = shutil.which("snmpd") or ("/usr/sbin/snmpd" if Path("/usr/sbin/snmpd").exists() else None)
    if snmpd is None:
        print("    (snmpd is not installed: the SNMP job is left out)")
        yield None
        return
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "persist").mkdir(exist_ok=True)
    port = _free_udp_port()
    conf = directory / "snmpd.conf"
    conf.write_text(
        f'createUser {SNMP_USER} SHA-256 "{SNMP_AUTH}" AES "{SNMP_PRIV}"\n'
        f"rouser {SNMP_USER} priv\nsysLocation midbox demo rack\n{extra_config}",
        encoding="utf-8",
    )
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "SNMP_PERSISTENT_DIR": str(directory / "persist"),
        "MIBS": "",
    }
    with (directory / "snmpd.log").open("wb") as log:
        proc = subprocess.Popen(  # noqa: S603
            [snmpd, "-f", "-C", "-c", str(conf), "-I", "-smux", "-Lo", f"udp:127.0.0.1:{port}"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        time.sleep(0.5)
        if proc.poll() is not None:
            print("    (snmpd did not start: the SNMP job is left out)")
            yield None
        else:
            yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # free a moment ago and nobody listens on it: refused


if __name__ == "__main__":
    raise SystemExit(main())
