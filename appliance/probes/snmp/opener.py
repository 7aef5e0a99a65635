"""Opening SNMP sessions, shared by the SNMP probe and Shazzam's SNMP scanner.

One ``SessionOpener`` per event loop owns the pysnmp engine (v1, v3, and v2c when the fast path is off)
and the key that derives pysnmp's community index; v2c goes through the fast BER channel. Both callers
decide the same way which SNMP version a credential speaks, whether the rule allows SNMPv1, and whether
an unanswered request means the agent refused the credential.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

from appliance.errors import ProbeError
from appliance.interfaces import Credential
from appliance.probes.base import ProbeContext
from appliance.probes.snmp.keys import UsmKeyCache
from appliance.probes.snmp.session import (
    FastV2cSession,
    PysnmpSession,
    Session,
    community_of,
    pysnmp_auth,
    usm_settings,
)
from appliance.probes.snmp.v2c import V2cChannel
from appliance.probes.snmp.v3 import EngineBook, V3Channel
from hardening.policy import IPAddress


class SessionOpener:
    """Opens sessions to agents; ``aclose`` releases the pysnmp engine if one was started."""

    def __init__(self, *, fast_v2c: bool = True, fast_v3: bool = True) -> None:
        self._fast_v2c = fast_v2c
        self._fast_v3 = fast_v3
        self._keys = UsmKeyCache()
        self._engines = EngineBook()
        self._engine: Any = None
        # pysnmp caches a community by its index and ignores a new secret under an old index, so the
        # index is derived from alias and secret under a key that lives only as long as this opener.
        self._index_key = secrets.token_bytes(32)

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
        if version == "2c" and self._fast_v2c:
            community = community_of(credential, alias, index)
            channel = V2cChannel(address, port, community, timeout_s, retries, where)
            await channel.open()
            return FastV2cSession(channel, sem, where, lanes)
        if version == "3" and self._fast_v3:
            settings = usm_settings(credential, alias)
            v3 = V3Channel(
                address,
                port,
                self._keys.maker(settings),
                f"vlan-{index}".encode() if index else b"",
                timeout_s,
                retries,
                where,
                self._engines,
            )
            await v3.open()
            return FastV2cSession(v3, sem, where, lanes)
        auth = pysnmp_auth(credential, alias, version, self._index_key, index)
        from pysnmp.hlapi.v3arch.asyncio import SnmpEngine, Udp6TransportTarget, UdpTransportTarget

        if self._engine is None:
            self._engine = SnmpEngine()
        cls = Udp6TransportTarget if address.version == 6 else UdpTransportTarget
        target = await cls.create((str(address), port), timeout=timeout_s, retries=retries)
        # Cisco's v3 form of community indexing is the context "vlan-N".
        context = f"vlan-{index}" if version == "3" and index else ""
        return PysnmpSession(
            self._engine, auth, target, sem, where, timeout_s, retries, v1=version == "1", context=context
        )

    async def aclose(self) -> None:
        if self._engine is not None:
            self._engine.close_dispatcher()
            self._engine = None


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
