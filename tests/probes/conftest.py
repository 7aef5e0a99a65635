"""Shared fixtures: real daemons on loopback, an in-memory credential store, a loopback-only policy."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from appliance.errors import ProbeError
from appliance.limits import Limits
from appliance.probes.base import Credential, Job, MemoryAudit, ProbeContext
from hardening.policy import AllowRule, Policy, PortRange
from tests.daemons import SnmpServer, SshServer, run_snmpd, run_sshd


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshServer]:
    with run_sshd(tmp_path_factory.mktemp("sshd")) as server:
        yield server


@pytest.fixture(scope="session")
def snmpd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SnmpServer]:
    with run_snmpd(tmp_path_factory.mktemp("snmpd")) as server:
        yield server


@dataclass(frozen=True)
class MemCredential:
    alias: str
    type: str
    user: str | None
    secrets: tuple[bytes, ...]
    options: Mapping[str, str] = field(default_factory=dict)

    def secret(self, index: int = 0) -> bytes:
        return self.secrets[index]  # IndexError (a LookupError) for an absent optional secret


class MemCredentials:
    """An in-memory CredentialSource; counts lookups so tests can prove a denied job never read one."""

    def __init__(self, *creds: MemCredential) -> None:
        self._creds = {c.alias: c for c in creds}
        self.lookups: list[str] = []

    def lookup(self, alias: str) -> Credential:
        self.lookups.append(alias)
        try:
            return self._creds[alias]
        except KeyError:
            raise ProbeError(f"credential {alias!r} is not in this appliance's store") from None


def loopback_rule(
    probes: tuple[str, ...], ports: tuple[tuple[int, int], ...], creds: tuple[str, ...]
) -> AllowRule:
    return AllowRule(
        networks=(ipaddress.ip_network("127.0.0.1/32"),),
        hosts=(),
        probes=frozenset(probes),
        ports=tuple(PortRange(lo, hi) for lo, hi in ports),
        credentials=tuple(creds),
    )


class ProbeAudit(MemoryAudit):
    """What a probe's audit sink is in the appliance: every event names the job (see JobAudit)."""

    def record(self, event: str, fields: Mapping[str, object]) -> None:
        super().record(event, {"job": "0" * 32, "topic": "test", **fields})


def make_ctx(
    policy: Policy, creds: MemCredentials, state_dir: Path, limits: Limits | None = None
) -> ProbeContext:
    return ProbeContext(
        policy=policy, credentials=creds, audit=ProbeAudit(), limits=limits or Limits(), state_dir=state_dir
    )


def make_job(topic: str, name: str, source: str, **params: str) -> Job:
    return Job(
        sys_id="0" * 32,
        topic=topic,
        name=name,
        source=source,
        agent="mid.server.test",
        parameters=tuple(params.items()),
    )
