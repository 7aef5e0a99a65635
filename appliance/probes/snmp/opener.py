"""Opening SNMP sessions, shared by the SNMP probe and Shazzam's SNMP scanner.

Every version runs on midbox's own codec: v1 and v2c on the community channel (``v2c``, message
version 0 or 1), v3 on the USM channel (``v3``). One ``SessionOpener`` per event loop owns the USM
key cache and the book of agents' engine ids. Both callers decide the same way which SNMP version a
credential speaks, whether the rule allows SNMPv1, and whether an unanswered request means the agent
refused the credential.

``legacy`` is a seam for the tests and the benchmark only: an opener of another SNMP stack (pysnmp,
in tests/support) that takes the versions it names, so the same job can be run through both and the
results compared. The appliance never passes one, and the binary carries no other stack.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from appliance.errors import ProbeError
from appliance.interfaces import Credential
from appliance.probes.base import ProbeContext
from appliance.probes.snmp.ber import V1, V2C
from appliance.probes.snmp.keys import UsmKeyCache
from appliance.probes.snmp.session import ChannelSession, Session, community_of, usm_settings
from appliance.probes.snmp.v2c import V2cChannel
from appliance.probes.snmp.v3 import EngineBook, V3Channel
from hardening.policy import IPAddress


class LegacyOpener(Protocol):
    """Sessions through another SNMP stack for the versions in ``versions`` (tests' oracle only)."""

    versions: frozenset[str]

    async def open(
        self,
        credential: Credential,
        alias: str,
        version: str,
        address: IPAddress,
        port: int,
        *,
        timeout_s: float,
        retries: int,
        sem: asyncio.Semaphore,
        where: str,
        index: int,
    ) -> Session: ...

    async def aclose(self) -> None: ...


class SessionOpener:
    """Opens sessions to agents; ``aclose`` releases what a ``legacy`` opener holds."""

    def __init__(self, *, legacy: LegacyOpener | None = None) -> None:
        self._keys = UsmKeyCache()
        self._engines = EngineBook()
        self._legacy = legacy

    async def open(
        self,
        credential: Credential,
        alias: str,
        version: str,
        address: IPAddress,
        port: int,
        *,
        timeout_s: float,
        retries: int,
        sem: asyncio.Semaphore,
        where: str,
        index: int = 0,
        lanes: int = 1,
    ) -> Session:
        if self._legacy is not None and version in self._legacy.versions:
            return await self._legacy.open(
                credential,
                alias,
                version,
                address,
                port,
                timeout_s=timeout_s,
                retries=retries,
                sem=sem,
                where=where,
                index=index,
            )
        if version in ("1", "2c"):
            community = community_of(credential, alias, index)
            wire = V1 if version == "1" else V2C
            channel = V2cChannel(address, port, community, timeout_s, retries, where, wire)
            await channel.open()
            return ChannelSession(channel, sem, where, lanes, v1=version == "1")
        if version == "3":
            settings = usm_settings(credential, alias)
            v3 = V3Channel(
                address,
                port,
                self._keys.maker(settings),
                # Cisco's v3 form of community indexing is the context "vlan-N".
                f"vlan-{index}".encode() if index else b"",
                timeout_s,
                retries,
                where,
                self._engines,
            )
            await v3.open()
            return ChannelSession(v3, sem, where, lanes)
        raise ProbeError(
            f"SNMP version {version!r} is not one of 1, 2c, 3: set the job's version to one of them"
        )

    async def aclose(self) -> None:
        if self._legacy is not None:
            await self._legacy.aclose()


def credential_version(credential: Credential, alias: str, asked: str | None = None) -> str:
    """The job's own version if it names one, else the credential's: usm is v3, a community v2c unless
    it was stored with ``--snmp-version 1``."""
    if asked is not None:
        return asked
    if credential.type == "snmp-usm":
        return "3"
    if credential.type == "snmp-community":
        return "1" if credential.options.get("version") == "1" else "2c"
    raise ProbeError(f"credential {alias!r} is a {credential.type}; SNMP needs an snmp-community or snmp-usm")


def v1_allowed(ctx: ProbeContext, address: IPAddress, port: int, alias: str, hostname: str | None) -> bool:
    """True if the rule that allows this alias against this target says ``snmp_v1 = true``."""
    decision = ctx.policy.check(probe="snmp", address=address, port=port, credential=alias, hostname=hostname)
    rule = ctx.policy.rule(decision.rule) if decision.allowed else None
    return rule is not None and rule.snmp_v1


def refused_credential(session: Session, version: str) -> bool:
    """After a NoResponseError: a v1/v2c agent does not answer a community it does not know; one that answered
    before, or a v3 agent (wrong keys get a report, raised as CredentialRejectedError), is not refusing it."""
    return not session.answered and version != "3"
