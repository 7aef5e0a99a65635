"""The SNMP probe (topic SNMP): v2c and v3 (USM authPriv) get, getnext, getbulk-based walk and tables.

v2c goes through a small strict BER codec of our own (``_snmpber``; pyasn1's generic decoder made a
full walk 7x slower than net-snmp); v3 goes through pysnmp, imported inside the probe so the CLI starts
fast, with one SnmpEngine per probe instance (so per event loop) created on first use. ``fast_v2c=False``
sends v2c through pysnmp too. Requests in flight per agent are capped: a burst of hundreds of datagrams
at one snmpd overflows its UDP receive buffer and turns into timeouts.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import xml.etree.ElementTree as ET
from typing import Any

from appliance.errors import PayloadError
from appliance.limits import Limits
from appliance.probes._snmpsession import FastV2cSession, PysnmpSession, Session, community_of, pysnmp_auth
from appliance.probes._snmpspec import SpecLine, parse_spec
from appliance.probes._snmpv2c import V2cChannel
from appliance.probes._snmpvalues import varbind_element
from appliance.probes.base import Credential, Job, ProbeContext, use_credential
from appliance.probes.targets import checked_addresses
from hardening.policy import IPAddress

log = logging.getLogger(__name__)

MAX_TIMEOUT_MS = 60_000
MAX_RETRIES = 5


class SnmpProbe:
    """``per_agent`` caps requests in flight to one agent; ``max_repetitions`` sizes each GETBULK."""

    def __init__(self, *, per_agent: int = 8, max_repetitions: int = 50, fast_v2c: bool = True) -> None:
        if not 1 <= per_agent <= 256 or not 1 <= max_repetitions <= 1000:
            raise ValueError("per_agent must be 1..256 and max_repetitions 1..1000")
        self._per_agent = per_agent
        self._fast_v2c = fast_v2c
        self._max_repetitions = max_repetitions
        self._engine: Any = None
        self._agent_slots: dict[tuple[str, int], _AgentSlot] = {}
        # pysnmp caches a community by its index and ignores a new secret under an old index, so the
        # index is derived from alias and secret under a key that lives only as long as this probe.
        self._index_key = secrets.token_bytes(32)

    @classmethod
    def from_limits(cls, limits: Limits) -> SnmpProbe:
        """The probe with the concurrency caps of ``limits`` (the dispatcher's constructor)."""
        return cls(per_agent=limits.snmp_per_agent, max_repetitions=limits.snmp_max_repetitions)

    @property
    def kind(self) -> str:
        return "snmp"

    async def run(self, job: Job, ctx: ProbeContext) -> ET.Element:
        host = job.source.strip()
        if not host:
            raise PayloadError("SNMP job needs the agent host in 'source'")
        spec = parse_spec(job.param("oid_spec_list") or "")
        version = (job.param("version") or "2c").strip().lower()
        if version not in ("2c", "3"):
            raise PayloadError(f"SNMP version must be '2c' or '3', got {version[:10]!r}")
        port = job.int_param("port", 161, 1, 65535)
        timeout_ms = job.int_param("timeout", 1500, 10, MAX_TIMEOUT_MS)
        retries = job.int_param("retries", 1, 0, MAX_RETRIES)
        use_bulk = (job.param("use_getbulk") or "true").strip().lower() != "false"
        alias = job.param("credential") or ""
        if not alias:
            raise PayloadError("SNMP job needs a 'credential' parameter (snmp-community or snmp-usm alias)")
        addresses = await checked_addresses(ctx, probe="snmp", host=host, port=port, credential=alias)
        credential = use_credential(ctx, job, alias, host)
        address = addresses[0]
        ctx.audit.record(
            "probe.connect",
            {
                "probe": "snmp",
                "target": host,
                "address": str(address),
                "port": port,
                "credential": alias,
                "version": version,
            },
        )
        key = (str(address), port)
        slot = self._agent_slots.get(key)
        if slot is None:
            slot = self._agent_slots[key] = _AgentSlot(asyncio.Semaphore(self._per_agent))
        slot.users += 1
        try:
            session = await self._session(
                credential, alias, version, address, port, timeout_ms / 1000, retries, host, slot.sem
            )
            try:
                return await self._collect(session, spec, use_bulk, ctx.limits.snmp_varbinds)
            finally:
                await session.close()
        finally:
            slot.users -= 1
            if slot.users == 0:
                del self._agent_slots[key]

    async def _collect(self, session: Session, spec: list[SpecLine], use_bulk: bool, cap: int) -> ET.Element:
        result = ET.Element("result")
        count = 0
        for line in spec:
            if line.op == "get":
                rows = await session.get(line.oids)
            elif line.op == "getnext":
                rows = await session.getnext(line.oids)
            else:
                rows = []
                for root in line.oids:
                    room = cap - count - len(rows) + 1  # one more than fits, so a cut walk is seen
                    rows.extend(await session.walk(root, use_bulk, self._max_repetitions, room))
            for oid, value in rows:
                if count >= cap:
                    result.set("truncated", "true")
                    return result
                result.append(varbind_element(oid, value))
                count += 1
        return result

    async def _session(
        self,
        credential: Credential,
        alias: str,
        version: str,
        address: IPAddress,
        port: int,
        timeout_s: float,
        retries: int,
        host: str,
        sem: asyncio.Semaphore,
    ) -> Session:
        where = f"{host}:{port}"
        if version == "2c" and self._fast_v2c:
            channel = V2cChannel(address, port, community_of(credential, alias), timeout_s, retries, where)
            await channel.open()
            return FastV2cSession(channel, sem, where)
        auth = pysnmp_auth(credential, alias, version, self._index_key)
        from pysnmp.hlapi.v3arch.asyncio import SnmpEngine, Udp6TransportTarget, UdpTransportTarget

        if self._engine is None:
            self._engine = SnmpEngine()
        cls = Udp6TransportTarget if address.version == 6 else UdpTransportTarget
        target = await cls.create((str(address), port), timeout=timeout_s, retries=retries)
        return PysnmpSession(self._engine, auth, target, sem, where, timeout_s, retries)

    async def aclose(self) -> None:
        if self._engine is not None:
            self._engine.close_dispatcher()
            self._engine = None


class _AgentSlot:
    """The request cap of one agent and how many jobs use it (so idle agents are forgotten)."""

    def __init__(self, sem: asyncio.Semaphore) -> None:
        self.sem = sem
        self.users = 0
