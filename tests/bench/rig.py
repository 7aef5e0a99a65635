"""Real appliances (`midbox run`, source or frozen) against one development instance, all on loopback.

Each appliance is set up the way an admin does it, through the command line: a trust root, a signed
config, credentials from stdin, a pinned SSH host key. The instance runs in this process (threads), so
its request counter and queue can be read directly.
"""

from __future__ import annotations

import datetime as dt
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from devinstance import pki
from devinstance.cli import params_xml
from devinstance.server import DevInstance
from devinstance.sshd import SshServer
from devinstance.store import Store
from tests.daemons import SnmpServer
from tests.helpers import dev_instance, make_pki

SSH_ALIAS, V2_ALIAS, V3_ALIAS = "bench-ssh", "bench-v2", "bench-v3"


@dataclass(frozen=True)
class Peers:
    http: str  # base URL of a Python HTTP target
    ssh: SshServer | None = None
    snmp: SnmpServer | None = None


@dataclass(frozen=True)
class Appliance:
    name: str
    proc: subprocess.Popen[bytes]

    @property
    def agent(self) -> str:
        return f"mid.server.{self.name}"


def source_midbox() -> list[str]:
    return [sys.executable, "-m", "appliance"]


# Every peer is one address (127.0.0.1): the politeness caps per target (10 new jobs a second by
# default) and per rule would be the figure, so they are raised to their ceilings.
RULE_RATES = "rate_per_s = 10000\nburst = 100000\nmax_concurrent = 1024\n"


def _appliance_rates(concurrency: int) -> str:
    return f"target_rate_per_s = 10000\ntarget_burst = 100000\ntarget_concurrency = {concurrency}\n"


def _rules(peers: Peers, rates: bool = True) -> str:
    extra = RULE_RATES if rates else ""
    out = f'[[allow]]\ncidr = "127.0.0.0/8"\nprobes = ["http", "tcp"]\nports = ["1-65535"]\n{extra}'
    if peers.ssh:
        out += (
            f'[[allow]]\ncidr = "127.0.0.1/32"\nprobes = ["ssh"]\nports = [{peers.ssh.port}]\n'
            f'credentials = ["{SSH_ALIAS}"]\n{extra}'
        )
    if peers.snmp:
        out += (
            f'[[allow]]\ncidr = "127.0.0.1/32"\nprobes = ["snmp"]\nports = [{peers.snmp.port}]\n'
            f'credentials = ["{V2_ALIAS}", "{V3_ALIAS}"]\n{extra}'
        )
    return out


class Rig:
    """The instance plus set-up appliances; ``start`` runs one, ``stop`` ends them all (also on error)."""

    def __init__(self, work: Path, midbox: list[str], instance: DevInstance, peers: Peers) -> None:
        self.work, self.midbox, self.instance, self.peers = work, midbox, instance, peers
        self.store: Store = instance.state.store
        self.running: list[Appliance] = []
        self._versions: dict[str, int] = {}
        self._admin = work / "admin"
        self._cmd(["keygen", "--out", str(self._admin), "--name", "admin", "--no-passphrase"])

    def _cmd(self, args: list[str], stdin: str | None = None) -> None:
        done = subprocess.run(
            [*self.midbox, *args], input=stdin, capture_output=True, text=True, timeout=120, check=False
        )
        if done.returncode:
            raise RuntimeError(f"midbox {args[0]} failed: {done.stderr.strip()[-400:]}")

    def prepare(self, name: str, *, poll_s: float, concurrency: int) -> tuple[Path, Path]:
        """Certificate, trust root, signed config and credential store of appliance ``name``."""
        state, config = self.work / f"state-{name}", self.work / f"{name}-{concurrency}-{poll_s}.toml"
        if config.exists():  # signed before; a second signature of new bytes would be refused
            return config, state
        p = self.work / "pki"
        ca = pki.ensure_ca(p)
        leaf = pki.issue(ca, p, f"appliance-{name}", f"mid.server.{name}", server=False)
        # Each new config of one state dir needs a higher version: the appliance refuses a rollback.
        version = self._versions[name] = self._versions.get(name, 0) + 1
        expires = (dt.datetime.now(dt.UTC) + dt.timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ")

        def text(rates: bool) -> str:
            return (
                f'version = {version}\nexpires = {expires}\n[appliance]\nname = "{name}"\n'
                f"max_concurrent_probes = {concurrency}\n{_appliance_rates(concurrency) if rates else ''}"
                f'[instance]\nurl = "{self.instance.url}"\nca_file = "{ca.cert}"\nclient_cert = "{leaf.cert}"\n'
                f'client_key = "{leaf.key}"\npoll_interval_s = {poll_s}\n{_rules(self.peers, rates)}'
            )

        config.write_text(text(rates=True), encoding="utf-8")
        try:
            self._cmd(["config", "sign", str(config), "--key", str(self._admin / "admin.key")])
        except RuntimeError as e:
            if "unknown key" not in str(e):
                raise
            # A binary built before the rate keys existed has no politeness caps to raise.
            config.write_text(text(rates=False), encoding="utf-8")
            self._cmd(["config", "sign", str(config), "--key", str(self._admin / "admin.key")])
        if not state.exists():
            self._cmd(
                ["trust", "init", "--state-dir", str(state), "--pubkey", str(self._admin / "admin.pub")]
            )
            self._creds(state)
        return config, state

    def _creds(self, state: Path) -> None:
        sd = ["--state-dir", str(state)]
        if self.peers.ssh:
            s = self.peers.ssh
            self._cmd(
                ["creds", "add", SSH_ALIAS, "--type", "ssh-password", "--user", s.user, *sd],
                s.password + "\n",
            )
            self._cmd(["hosts", "pin", f"127.0.0.1:{s.port}", str(s.host_key_pub), *sd])
        if self.peers.snmp:
            n = self.peers.snmp
            self._cmd(["creds", "add", V2_ALIAS, "--type", "snmp-community", *sd], n.community + "\n")
            self._cmd(
                ["creds", "add", V3_ALIAS, "--type", "snmp-usm", "--user", n.v3_user, *sd,
                 "--auth-protocol", "SHA-256", "--priv-protocol", "AES"],
                f"{n.v3_auth}\n{n.v3_priv}\n",
            )  # fmt: skip

    def start(self, name: str, *, poll_s: float = 5.0, concurrency: int = 64) -> Appliance:
        config, state = self.prepare(name, poll_s=poll_s, concurrency=concurrency)
        log = (self.work / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            [*self.midbox, "run", "-q", "--config", str(config), "--state-dir", str(state)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        app = Appliance(name, proc)
        self.running.append(app)
        return app

    def check_alive(self) -> None:
        for app in self.running:
            if app.proc.poll() is not None:
                tail = (self.work / f"{app.name}.log").read_text(errors="replace").strip().splitlines()[-3:]
                raise RuntimeError(
                    f"midbox run ({app.name}) exited with {app.proc.returncode}: {' | '.join(tail)}"
                )

    def stop(self, app: Appliance) -> None:
        if app.proc.poll() is None:
            app.proc.send_signal(signal.SIGTERM)
            try:
                app.proc.wait(30)
            except subprocess.TimeoutExpired:
                app.proc.kill()
                app.proc.wait()
        self.running.remove(app)

    def enqueue(self, agent: str, jobs: list[Mapping[str, str]]) -> list[str]:
        return self.store.enqueue([{"agent": agent, **job} for job in jobs])

    def answered(self, ids: list[str]) -> set[str]:
        """Those of ``ids`` with an answer on the input queue (asked in chunks: SQLite caps variables)."""
        found: set[str] = set()
        for i in range(0, len(ids), 500):
            chunk = ",".join(ids[i : i + 500])
            rows = self.store.query("ecc_queue", f"queue=input^response_toIN{chunk}", fields=["response_to"])
            found.update(row["response_to"] for row in rows)
        return found

    def wait(self, ids: list[str], timeout: float, tick: float = 0.05) -> float:
        """Seconds until every job in ``ids`` has its answer; raises after ``timeout``."""
        start = time.perf_counter()
        pending = list(ids)
        while pending:
            if time.perf_counter() - start > timeout:
                raise TimeoutError(f"{len(pending)} of {len(ids)} jobs unanswered after {timeout:.0f} s")
            time.sleep(tick)
            self.check_alive()
            done = self.answered(pending)
            pending = [i for i in pending if i not in done]
        return time.perf_counter() - start


def http_job(peers: Peers, path: str = "/hello") -> dict[str, str]:
    return {"topic": "RESTProbe", "source": "127.0.0.1", "payload": params_xml([f"url={peers.http}{path}"])}


def mixed_jobs(peers: Peers, count: int, closed_port: int) -> list[dict[str, str]]:
    """HTTP, SSH, SNMP v2c and v3, TCP in turn (those whose peer is up)."""
    kinds: list[dict[str, str]] = [http_job(peers)]
    if peers.ssh:
        kinds.append(
            {"topic": "SSHCommand", "name": "true", "source": "127.0.0.1",
             "payload": params_xml([f"port={peers.ssh.port}", f"credential={SSH_ALIAS}"])}
        )  # fmt: skip
    if peers.snmp:
        for alias, version in ((V2_ALIAS, "2c"), (V3_ALIAS, "3")):
            spec = ["oid_spec_list=get 1.3.6.1.2.1.1.1.0", f"version={version}"]
            kinds.append(
                {"topic": "SNMP", "name": "snmp", "source": "127.0.0.1",
                 "payload": params_xml([*spec, f"port={peers.snmp.port}", f"credential={alias}"])}
            )  # fmt: skip
    http_port = peers.http.rsplit(":", 1)[1]
    kinds.append(
        {"topic": "Shazzam", "name": "Shazzam", "source": "",
         "payload": params_xml(["ranges=127.0.0.1", f"ports={http_port},{closed_port}"])}
    )  # fmt: skip
    return [kinds[i % len(kinds)] for i in range(count)]


@contextmanager
def rig(work: Path, midbox: list[str], peers: Peers) -> Iterator[Rig]:
    work.mkdir(parents=True, exist_ok=True)
    p = make_pki(work / "pki")
    with ExitStack() as stack:
        instance = stack.enter_context(dev_instance(p, work / "instance.db"))
        r = Rig(work, midbox, instance, peers)
        try:
            yield r
        finally:
            for app in list(r.running):
                r.stop(app)
