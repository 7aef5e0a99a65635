"""The composition root of a running appliance: builds every part from one verified Config."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import socket
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from appliance import __version__
from appliance.config.model import Config
from appliance.config_push import ConfigPushProbe, PushTarget
from appliance.dispatch import Dispatcher
from appliance.gate import JobGate
from appliance.health import ConfigFacts, Health, cert_not_after
from appliance.interfaces import AuditSink, CredentialSource
from appliance.limits import MAX_LEDGER_ENTRIES, Limits
from appliance.livestatus import LiveStatus
from appliance.memtrim import IdleTrim
from appliance.probes.affinity import AFFINITY_FILE, CredentialAffinity
from appliance.probes.base import Probe, ProbeContext
from appliance.probes.heartbeat import HeartbeatProbe
from appliance.probes.http import HttpProbe
from appliance.probes.lazy import LazyProbe
from appliance.quarantine import Quarantine
from appliance.queue.durable import open_durable
from appliance.queue.transport import ecc_client, instance_client
from appliance.ratelimit import Limiter
from appliance.replay import LEDGER_FILE, RunLedger
from appliance.runner import Runner, RunnerSettings
from appliance.runstats import RunnerStats
from appliance.status_file import Publisher

if TYPE_CHECKING:
    from appliance.probes.snmp.probe import SnmpProbe


def registry(*probes: Probe) -> dict[str, Probe]:
    """Topic → probe, from the topics each probe declares. Anything else is refused."""
    table: dict[str, Probe] = {}
    for probe in probes:
        for topic in probe.topics:
            if topic in table:
                raise ValueError(f"topic {topic!r} is claimed by two probes")  # a wiring bug, not input
            table[topic] = probe
    return table


def default_probes(
    status: Callable[[], Mapping[str, str]], limits: Limits, *extra: Probe
) -> dict[str, Probe]:
    """Every probe this appliance was built to run, by topic (plus ``extra``, e.g. the config push).

    SSH, SNMP and TCP discovery are imported on their first job: an appliance that never runs one does
    not hold its code (heartbeat and HTTP share modules the queue client has loaded anyway). Shazzam's
    SNMP scanner opens sessions through the SNMP probe's opener, so a Shazzam job builds that probe too.
    """
    snmp: LazyProbe[SnmpProbe] = LazyProbe("snmp", ("SNMP",), lambda: _snmp_probe(limits))
    return registry(
        HeartbeatProbe(status),
        HttpProbe(),
        LazyProbe("ssh", ("SSHCommand", "SSHCommandLong"), lambda: _ssh_probe(limits)),
        snmp,
        LazyProbe("tcp", ("Shazzam",), lambda: _tcp_probe(limits, snmp)),
        *extra,
    )


def _snmp_probe(limits: Limits) -> SnmpProbe:
    from appliance.probes.snmp.probe import SnmpProbe

    return SnmpProbe.from_limits(limits)


def _ssh_probe(limits: Limits) -> Probe:
    from appliance.probes.ssh import SshProbe

    return SshProbe.from_limits(limits)


def _tcp_probe(limits: Limits, snmp: LazyProbe[SnmpProbe]) -> Probe:
    from appliance.probes.tcpscan import TcpScanProbe

    return TcpScanProbe.from_limits(limits, snmp=snmp.probe().opener)


def config_facts(config: Config) -> ConfigFacts:
    return ConfigFacts(
        version=config.version,
        sha256=config.sha256,
        signers=config.signers,
        expires=config.settings.expires,
        appliance=config.appliance.name,
        poll_interval_s=config.instance.poll_interval_s,
    )


def runner_settings(config: Config, limits: Limits) -> RunnerSettings:
    return RunnerSettings(
        poll_interval_s=config.instance.poll_interval_s,
        concurrency=limits.concurrent_probes,
        batch=min(limits.poll_batch, limits.concurrent_probes),
        shutdown_deadline_s=limits.shutdown_deadline_s,
        backoff_base_s=limits.backoff_base_s,
        backoff_cap_s=limits.backoff_cap_s,
        retry_after_cap_s=limits.retry_after_cap_s,
        version=__version__,
        host_name=socket.gethostname(),
        ip_address=local_address_towards(config.instance.url),
    )


def local_address_towards(url: str) -> str:
    """The local address this host would use to reach ``url`` ("" when that cannot be told).

    A UDP connect() only picks a route: no packet leaves the host.
    """
    from urllib.parse import urlsplit

    host = urlsplit(url).hostname
    if not host:
        return ""
    try:
        infos = socket.getaddrinfo(host, 443, type=socket.SOCK_DGRAM)
        family, _, _, _, address = infos[0]
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            return str(sock.getsockname()[0])
    except (OSError, IndexError, UnicodeError):
        return ""


async def run_appliance(
    config: Config,
    *,
    state_dir: Path,
    audit: AuditSink,
    credentials: CredentialSource,
    stop: asyncio.Event,
    seal_key: bytes,
    limits: Limits | None = None,
    hold: Callable[[], str | None] = lambda: None,
    key_password: bytes | None = None,
    health: Health | None = None,
    after_poll: Callable[[Health], None] | None = None,
    push_target: PushTarget | None = None,
    http: httpx.AsyncClient | None = None,
) -> RunnerStats:
    """Run until ``stop`` is set; return what was done.

    ``seal_key`` (32 bytes, derived from the host key) encrypts the journal and the outbox at rest.
    ``hold`` says why no new work may be claimed (an expired config or certificate), or None.
    ``health`` outlives one run (the service keeps one across reloads); ``after_poll`` publishes it,
    by default as ``STATE/status.json``. With ``push_target`` the appliance takes signed configs
    delivered through the instance (topic ``midbox.config``) and writes them there. ``http`` replaces
    the mTLS client to the instance (the service shares its own with the audit checkpoints; tests
    serve the development instance in-process through it); by default it is built from the config,
    and closed at the end. A client handed in is the caller's to close.
    """
    limits = limits or config.limits()
    if health is None:
        size = getattr(audit, "size", None)
        health = Health(
            version=__version__,
            binary_sha256="source",
            audit_head=(lambda: int(getattr(audit, "size", 0))) if isinstance(size, int) else None,
        )
    health.config = config_facts(config)
    health.cert_expires = cert_not_after(config.instance.client_cert)
    with contextlib.ExitStack() as held:
        journal, outbox = open_durable(state_dir, seal_key, limits.outbox_entries)
        held.callback(journal.close)  # one writer per log: the next run (a reload) opens them again
        held.callback(outbox.close)
        owned = http is None  # a client handed in belongs to the caller, who closes it
        if http is None:
            http = instance_client(
                config.instance, limits, name=config.appliance.name, key_password=key_password
            )
        client = ecc_client(http, name=config.appliance.name, limits=limits)
        gate = job_gate(config, state_dir, audit)
        status = LiveStatus(version=__version__, health=health, outbox=outbox, hold=hold, gate=gate)
        pushes = (ConfigPushProbe(config, push_target),) if push_target is not None else ()
        probes = default_probes(status.report, limits, *pushes)
        ctx = ProbeContext(
            config.policy(),
            credentials,
            audit,
            limits,
            state_dir,
            credential_map=config.credential_map,
            affinity=CredentialAffinity(state_dir / AFFINITY_FILE, limits.affinity_entries),
            limiter=limiter(config, audit),
        )
        runner = Runner(
            client=client,
            dispatcher=Dispatcher(probes, ctx),
            audit=audit,
            settings=runner_settings(config, limits),
            journal=journal,
            outbox=outbox,
            status=status,
            after_poll=after_poll or Publisher(state_dir).publish,
            gate=gate,
            trim=IdleTrim.for_this_process(),
        )
        try:
            await runner.run(stop)
        finally:
            if owned:
                await client.aclose()
        return runner.stats


def job_gate(config: Config, state_dir: Path, audit: AuditSink) -> JobGate:
    """Quarantine and replay protection, from the state directory and ``appliance.max_job_age_s``."""
    window = config.appliance.max_job_age_s
    ledger = RunLedger(state_dir / LEDGER_FILE, window, MAX_LEDGER_ENTRIES)
    return JobGate(Quarantine(state_dir), ledger, audit)


def limiter(config: Config, audit: AuditSink) -> Limiter:
    """Rate limits and breakers; breaker transitions are audited."""

    def on_breaker(event: str, target: str, failures: int, retry_at: float) -> None:
        if event == "breaker.opened":
            at = dt.datetime.fromtimestamp(retry_at, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            audit.record(event, {"target": target, "failures": failures, "retry_at": at})
        else:
            audit.record(event, {"target": target})

    return Limiter(config.rate_settings(), on_breaker=on_breaker)
