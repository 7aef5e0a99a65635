"""The SNMP probe (topic SNMP): v2c and v3 (USM authPriv) get, getnext, getbulk-based walk and tables.

pysnmp is imported inside the probe, not at module import, so the CLI starts fast. One SnmpEngine per
probe instance (so per event loop), created on first use. Requests in flight per agent are capped:
a burst of hundreds of datagrams at one snmpd overflows its UDP receive buffer and turns into timeouts.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
import xml.etree.ElementTree as ET
from typing import Any

from appliance.errors import PayloadError, ProbeError
from appliance.probes._snmpspec import Oid, SpecLine, format_oid, parse_spec
from appliance.probes._snmpvalues import varbind_element
from appliance.probes.base import Credential, Job, ProbeContext
from appliance.probes.targets import checked_addresses
from hardening.policy import IPAddress

log = logging.getLogger(__name__)

AUTH_PROTOCOLS = ("SHA", "SHA-224", "SHA-256", "SHA-384", "SHA-512")
PRIV_PROTOCOLS = ("AES", "AES-192", "AES-256")
MAX_TIMEOUT_MS = 60_000
MAX_RETRIES = 5


class SnmpProbe:
    """``per_agent`` caps requests in flight to one agent; ``max_repetitions`` sizes each GETBULK."""

    def __init__(self, *, per_agent: int = 8, max_repetitions: int = 50) -> None:
        if not 1 <= per_agent <= 256 or not 1 <= max_repetitions <= 1000:
            raise ValueError("per_agent must be 1..256 and max_repetitions 1..1000")
        self._per_agent = per_agent
        self._max_repetitions = max_repetitions
        self._engine: Any = None
        self._agent_slots: dict[tuple[str, int], _AgentSlot] = {}
        # pysnmp caches a community by its index and ignores a new secret under an old index, so the
        # index is derived from alias and secret under a key that lives only as long as this probe.
        self._index_key = secrets.token_bytes(32)

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
        credential = ctx.credentials.lookup(alias)
        auth = _auth_data(credential, alias, version, self._index_key)
        address = addresses[0]
        ctx.audit.record(
            "probe.snmp",
            {"target": host, "address": str(address), "port": port, "credential": alias, "version": version},
        )
        key = (str(address), port)
        slot = self._agent_slots.get(key)
        if slot is None:
            slot = self._agent_slots[key] = _AgentSlot(asyncio.Semaphore(self._per_agent))
        slot.users += 1
        try:
            session = await self._session(address, port, auth, timeout_ms / 1000, retries, host, slot.sem)
            return await self._collect(session, spec, use_bulk, ctx.limits.snmp_varbinds)
        finally:
            slot.users -= 1
            if slot.users == 0:
                del self._agent_slots[key]

    async def _collect(self, session: _Session, spec: list[SpecLine], use_bulk: bool, cap: int) -> ET.Element:
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
        address: IPAddress,
        port: int,
        auth: Any,
        timeout_s: float,
        retries: int,
        host: str,
        sem: asyncio.Semaphore,
    ) -> _Session:
        from pysnmp.hlapi.v3arch.asyncio import SnmpEngine, Udp6TransportTarget, UdpTransportTarget

        if self._engine is None:
            self._engine = SnmpEngine()
        cls = Udp6TransportTarget if address.version == 6 else UdpTransportTarget
        target = await cls.create((str(address), port), timeout=timeout_s, retries=retries)
        return _Session(self._engine, auth, target, sem, f"{host}:{port}", timeout_s, retries)

    async def aclose(self) -> None:
        if self._engine is not None:
            self._engine.close_dispatcher()
            self._engine = None


class _AgentSlot:
    """The request cap of one agent and how many jobs use it (so idle agents are forgotten)."""

    def __init__(self, sem: asyncio.Semaphore) -> None:
        self.sem = sem
        self.users = 0


class _Session:
    """Requests to one agent with one credential; every request waits for an agent slot."""

    def __init__(
        self,
        engine: Any,
        auth: Any,
        target: Any,
        sem: asyncio.Semaphore,
        where: str,
        timeout_s: float,
        retries: int,
    ) -> None:
        from pysnmp.hlapi.v3arch.asyncio import ContextData

        self._engine = engine
        self._auth = auth
        self._target = target
        self._sem = sem
        self._where = where
        self._ctx = ContextData()
        self._wait_s = timeout_s * (retries + 1) + 1.0

    async def get(self, oids: tuple[Oid, ...]) -> list[tuple[Oid, Any]]:
        from pysnmp.hlapi.v3arch.asyncio import get_cmd

        return await self._request(get_cmd, oids)

    async def getnext(self, oids: tuple[Oid, ...]) -> list[tuple[Oid, Any]]:
        from pysnmp.hlapi.v3arch.asyncio import next_cmd

        return await self._request(next_cmd, oids)

    async def walk(self, root: Oid, use_bulk: bool, repetitions: int, cap: int) -> list[tuple[Oid, Any]]:
        """Every varbind under ``root`` (GETBULK pages, or GETNEXT when bulk is off), at most ``cap``."""
        from pysnmp.hlapi.v3arch.asyncio import bulk_cmd, next_cmd

        rows: list[tuple[Oid, Any]] = []
        current = root
        while len(rows) < cap:
            if use_bulk:
                page = await self._request(bulk_cmd, (current,), 0, min(repetitions, max(cap - len(rows), 1)))
            else:
                page = await self._request(next_cmd, (current,))
            if not page:
                return rows
            for oid, value in page:
                if _is_end(value) or oid[: len(root)] != root:
                    return rows
                if oid <= current:
                    raise ProbeError(
                        f"SNMP agent {self._where} returned a non-increasing OID {format_oid(oid)}"
                    )
                rows.append((oid, value))
                current = oid
        return rows

    async def _request(self, fn: Any, oids: tuple[Oid, ...], *bulk: int) -> list[tuple[Oid, Any]]:
        from pysnmp.hlapi.v3arch.asyncio import ObjectIdentity, ObjectType

        var_binds = [ObjectType(ObjectIdentity(o)) for o in oids]
        async with self._sem:
            try:
                err_ind, err_status, err_index, out = await asyncio.wait_for(
                    fn(self._engine, self._auth, self._target, self._ctx, *bulk, *var_binds, lookupMib=False),
                    self._wait_s,
                )
            except TimeoutError as e:
                raise ProbeError(f"no SNMP response from {self._where}") from e
        if err_ind:
            raise ProbeError(_indication_message(str(err_ind), self._where))
        if err_status:
            status = err_status.prettyPrint() if hasattr(err_status, "prettyPrint") else str(err_status)
            raise ProbeError(f"SNMP agent {self._where} answered {status} (index {int(err_index)})")
        return [(tuple(int(s) for s in name), value) for name, value in out]


def _is_end(value: Any) -> bool:
    return type(value).__name__ == "EndOfMibView"


def _indication_message(text: str, where: str) -> str:
    low = text.lower()
    if "timeout" in low or "no snmp response" in low:
        return f"no SNMP response from {where} (agent down, filtered, or wrong community/user)"
    if "digest" in low or "decryption" in low or "unknown user" in low or "username" in low:
        return f"SNMPv3 authentication with {where} failed: {text[:120]}"
    return f"SNMP error with {where}: {text[:160]}"


def _auth_data(credential: Credential, alias: str, version: str, index_key: bytes) -> Any:
    from pysnmp.hlapi.v3arch.asyncio import CommunityData, UsmUserData
    from pysnmp.hlapi.v3arch.asyncio import auth as a

    if version == "2c":
        if credential.type != "snmp-community":
            raise ProbeError(f"credential {alias!r} is a {credential.type}; SNMP v2c needs an snmp-community")
        raw = credential.secret(0)
        try:
            community = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ProbeError(f"credential {alias!r}: the community is not UTF-8") from e
        index = hmac.new(index_key, alias.encode() + b"\0" + raw, hashlib.sha256).hexdigest()[:24]
        return CommunityData(f"m{index}", community, mpModel=1)  # noqa: S508 - v2c is asked for by the job
    if credential.type != "snmp-usm":
        raise ProbeError(f"credential {alias!r} is a {credential.type}; SNMP v3 needs an snmp-usm")
    if not credential.user:
        raise ProbeError(f"credential {alias!r} has no USM user name")
    auth_name = credential.options.get("auth_protocol", "SHA-256").upper()
    priv_name = credential.options.get("priv_protocol", "AES").upper()
    auth_protocols = {
        "SHA": a.USM_AUTH_HMAC96_SHA,
        "SHA-224": a.USM_AUTH_HMAC128_SHA224,
        "SHA-256": a.USM_AUTH_HMAC192_SHA256,
        "SHA-384": a.USM_AUTH_HMAC256_SHA384,
        "SHA-512": a.USM_AUTH_HMAC384_SHA512,
    }
    # AES-192/256 with Blumenthal key extension, as net-snmp's "AES-192"/"AES-256".
    priv_protocols = {
        "AES": a.USM_PRIV_CFB128_AES,
        "AES-192": a.USM_PRIV_CFB192_AES_BLUMENTHAL,
        "AES-256": a.USM_PRIV_CFB256_AES_BLUMENTHAL,
    }
    if auth_name not in auth_protocols:
        raise ProbeError(f"credential {alias!r}: auth_protocol must be one of {', '.join(AUTH_PROTOCOLS)}")
    if priv_name not in priv_protocols:
        raise ProbeError(f"credential {alias!r}: priv_protocol must be one of {', '.join(PRIV_PROTOCOLS)}")
    try:
        auth_key, priv_key = credential.secret(0).decode("utf-8"), credential.secret(1).decode("utf-8")
    except (LookupError, UnicodeDecodeError) as e:
        raise ProbeError(f"credential {alias!r} needs an auth and a priv pass phrase (UTF-8)") from e
    if len(auth_key) < 8 or len(priv_key) < 8:
        raise ProbeError(f"credential {alias!r}: USM pass phrases must be at least 8 characters")
    return UsmUserData(
        credential.user,
        authKey=auth_key,
        privKey=priv_key,
        authProtocol=auth_protocols[auth_name],
        privProtocol=priv_protocols[priv_name],
    )
