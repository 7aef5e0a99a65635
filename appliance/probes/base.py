"""What every probe receives and returns. Probes see credential handles and a policy, never config."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from appliance.interfaces import AuditSink, Credential, CredentialSource
from appliance.limits import Limits
from appliance.probes.affinity import CredentialAffinity
from appliance.probes.resolver import Resolver, system_resolve
from appliance.ratelimit import Lease, Limiter
from hardening.audit.events import check_event
from hardening.policy import CredentialMap, Policy


@dataclass(frozen=True)
class Job:
    """One claimed ECC output record with its payload parameters parsed."""

    sys_id: str
    topic: str
    name: str
    source: str
    agent: str
    agent_correlator: str = ""
    priority: str = "2"
    parameters: tuple[tuple[str, str], ...] = ()
    # The parameters as the probe reads them (SnmpParams, an HTTP request), parsed once when the job's
    # ask is built (``appliance.asks.prepared``); None: the probe parses them itself.
    parsed: object = field(default=None, compare=False, repr=False)

    def param(self, name: str, default: str | None = None) -> str | None:
        for key, value in self.parameters:
            if key == name:
                return value
        return default

    def int_param(self, name: str, default: int, low: int, high: int) -> int:
        from appliance.errors import PayloadError

        raw = self.param(name)
        if raw is None or raw == "":
            return default
        try:
            value = int(raw)
        except ValueError as e:
            raise PayloadError(f"parameter {name!r} must be an integer, got {raw[:40]!r}") from e
        if not low <= value <= high:
            raise PayloadError(f"parameter {name!r} must be between {low} and {high}, got {value}")
        return value


class MemoryAudit:
    """An audit sink that keeps events in a list (tests, and before the audit log is opened).

    It checks each event against the audit log's vocabulary, so what passes here is also accepted
    by the real log.
    """

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, object]]] = []

    def record(self, event: str, fields: Mapping[str, object]) -> None:
        check_event(event, fields)
        self.events.append((event, dict(fields)))


class JobAudit:
    """The audit sink a probe sees: every event it records names the job and topic it ran for."""

    def __init__(self, sink: AuditSink, job: str, topic: str) -> None:
        self._sink = sink
        self._job = job
        self._topic = topic
        self.accepted: str | None = None  # the credential alias the target accepted, if any

    def record(self, event: str, fields: Mapping[str, object]) -> None:
        merged: dict[str, object] = {"job": self._job, "topic": self._topic}
        merged.update(fields)
        self._sink.record(event, merged)
        if event == "credential.attempt" and fields.get("outcome") == "accepted":
            alias = fields.get("alias")
            self.accepted = alias if isinstance(alias, str) else None


def use_credential(ctx: ProbeContext, job: Job, alias: str, target: str) -> Credential:
    """Look a credential up for ``job`` and audit its use (alias and type only, never the secret)."""
    credential = ctx.credentials.lookup(alias)
    ctx.audit.record(
        "credential.used",
        {"alias": alias, "type": credential.type, "job": job.sys_id, "target": target, "topic": job.topic},
    )
    return credential


@dataclass(frozen=True)
class ProbeContext:
    policy: Policy
    credentials: CredentialSource
    audit: AuditSink
    limits: Limits
    state_dir: Path = field(default=Path("."))
    credential_map: CredentialMap = field(default_factory=CredentialMap)
    affinity: CredentialAffinity = field(default_factory=CredentialAffinity)
    # Every target name is resolved through this, once per connection (tests supply their own answers).
    resolver: Resolver = system_resolve
    # Rate limits and breakers (None: unlimited, as in unit tests); the dispatcher gives each job a lease.
    limiter: Limiter | None = None
    lease: Lease | None = None


class Probe(Protocol):
    """A kind of work. One instance per event loop, so it may hold long-lived clients."""

    @property
    def kind(self) -> str:
        """The policy kind this probe is checked as: 'http', 'ssh', 'snmp' or 'tcp'."""
        ...

    @property
    def topics(self) -> tuple[str, ...]:
        """The ECC topics this probe answers; the app's registry is built from these."""
        ...

    def rerun_safe(self, params: Mapping[str, str]) -> bool:
        """Whether a job with these parameters may simply run again after a crash interrupted it
        (it only reads); if not, the interrupted job is answered with an error instead."""
        ...

    async def run(self, job: Job, ctx: ProbeContext) -> ET.Element:
        """Run the job and return its ``<result>`` element; raise ProbeError (or a subclass) on failure."""
        ...

    async def aclose(self) -> None: ...
