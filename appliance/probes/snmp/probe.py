"""The SNMP probe (topic SNMP): v1, v2c and v3 (USM authPriv) walks, tables, get and getnext.

The job is read as ServiceNow's SNMP probes write it (``params``, ``spec``) and answered
with the MIB-named ``<result><snmp>`` tree its sensors read (``tree``). v1 runs only where the
covering allow rule says ``snmp_v1 = true``. Credentials come from ``credchoice``: the job's own
``credential`` (midbox's extension), else ``credential_id``/``credential_tag`` through the signed map,
else the rule's aliases in order; a v1/v2c community the agent never answers, or a v3 unknown user,
wrong digest or decryption error, moves on to the next one.

Every version goes through a small strict BER codec of our own (``ber``; pyasn1's generic decoder
made a full walk 7x slower than net-snmp): v1 and v2c on the community channel (``v2c``), v3 with
our own USM layer (``usm``, ``v3``: through pysnmp a full v3 walk took 12x ``snmpbulkwalk -v3``).
The binary carries no pysnmp; the tests keep it as the oracle the codec is compared with, through
the ``legacy`` seam of ``SessionOpener`` (never passed by the appliance).
Requests in flight per agent are capped: a burst of hundreds of datagrams
at one snmpd overflows its UDP receive buffer and turns into timeouts.
"""

from __future__ import annotations

import asyncio
import logging
import xml.etree.ElementTree as ET
from collections.abc import Mapping

from appliance.credtypes import PROBE_TYPES
from appliance.errors import CredentialRejectedError, PayloadError, TargetDeniedError
from appliance.interfaces import Credential
from appliance.limits import Limits
from appliance.mib.oids import Oid
from appliance.probes.base import Job, ProbeContext
from appliance.probes.credchoice import explicit_alias, with_credentials
from appliance.probes.snmp.opener import (
    LegacyOpener,
    SessionOpener,
    credential_version,
    refused_credential,
    v1_allowed,
)
from appliance.probes.snmp.params import SnmpParams, parse_params
from appliance.probes.snmp.session import (
    Row,
    Session,
    row_bytes,
)
from appliance.probes.snmp.spec import SpecLine
from appliance.probes.snmp.tree import TreeBuilder
from appliance.probes.snmp.v2c import NoResponseError
from appliance.probes.snmp.values import render
from appliance.probes.targets import checked_addresses, is_literal
from hardening.policy import IPAddress

log = logging.getLogger(__name__)


class SnmpProbe:
    """``per_agent`` caps requests in flight to one agent; ``max_repetitions`` sizes each GETBULK;
    a bulk walk runs in ``walk_lanes`` concurrent ranges (at most ``per_agent``). ``legacy`` is the
    tests' seam to run some versions through another SNMP stack (see ``opener``)."""

    topics = ("SNMP",)

    def rerun_safe(self, params: Mapping[str, str]) -> bool:
        return True  # GET and walks only: SET is never sent

    def __init__(
        self,
        *,
        per_agent: int = 8,
        max_repetitions: int = 50,
        walk_lanes: int = 4,
        legacy: LegacyOpener | None = None,
    ) -> None:
        if not 1 <= per_agent <= 256 or not 1 <= max_repetitions <= 1000 or not 1 <= walk_lanes <= 256:
            raise ValueError("per_agent and walk_lanes must be 1..256 and max_repetitions 1..1000")
        self._per_agent = per_agent
        self._lanes = min(walk_lanes, per_agent)
        self._max_repetitions = max_repetitions
        self._opener = SessionOpener(legacy=legacy)
        self._agent_slots: dict[tuple[str, int], _AgentSlot] = {}

    @property
    def opener(self) -> SessionOpener:
        """The session opener this probe owns; Shazzam's SNMP scanner shares it."""
        return self._opener

    @classmethod
    def from_limits(cls, limits: Limits) -> SnmpProbe:
        """The probe with the concurrency caps of ``limits`` (the dispatcher's constructor)."""
        return cls(
            per_agent=limits.snmp_per_agent,
            max_repetitions=limits.snmp_max_repetitions,
            walk_lanes=limits.snmp_walk_lanes,
        )

    @property
    def kind(self) -> str:
        return "snmp"

    async def run(self, job: Job, ctx: ProbeContext) -> ET.Element:
        host = job.source.strip()
        if not host:
            raise PayloadError("SNMP job needs the agent host in 'source'")
        params = job.parsed if isinstance(job.parsed, SnmpParams) else parse_params(job)
        named = explicit_alias(job)
        hostname = None if is_literal(host) else host
        addresses = await checked_addresses(ctx, probe="snmp", host=host, port=params.port, credential=named)
        address = addresses[0]

        async def attempt(alias: str, credential: Credential) -> ET.Element:
            version = credential_version(credential, alias, params.version)
            if version == "1" and not v1_allowed(ctx, address, params.port, alias, hostname):
                reason = "SNMPv1 is not enabled for this target and credential"
                ctx.audit.record(
                    "target.denied",
                    {
                        "probe": "snmp",
                        "target": host,
                        "address": str(address),
                        "port": params.port,
                        "credential": alias,
                        "reason": reason,
                    },
                )
                message = (
                    f"{reason} ({host}:{params.port}, {alias!r}): v1 has no protection and coarse errors; "
                    "use a v2c or v3 credential, or set snmp_v1 = true in the [[allow]] rule that covers it"
                )
                # A credential the job named itself ends the job; one of a rule's list is skipped.
                raise TargetDeniedError(message) if named else CredentialRejectedError(message)
            return await self._attempt(ctx, host, address, params, alias, credential, version)

        return await with_credentials(
            ctx,
            job,
            probe="snmp",
            types=PROBE_TYPES["snmp"],
            target=host,
            address=address,
            port=params.port,
            hostname=hostname,
            attempt=attempt,
        )

    async def _attempt(
        self,
        ctx: ProbeContext,
        host: str,
        address: IPAddress,
        params: SnmpParams,
        alias: str,
        credential: Credential,
        version: str,
    ) -> ET.Element:
        ctx.audit.record(
            "probe.connect",
            {
                "probe": "snmp",
                "target": host,
                "address": str(address),
                "port": params.port,
                "credential": alias,
                "version": version,
            },
        )
        key = (str(address), params.port)
        slot = self._agent_slots.get(key)
        if slot is None:
            slot = self._agent_slots[key] = _AgentSlot(asyncio.Semaphore(self._per_agent))
        slot.users += 1
        try:
            session = await self._opener.open(
                credential,
                alias,
                version,
                address,
                params.port,
                timeout_s=params.timeout_s,
                retries=params.retries,
                sem=slot.sem,
                where=f"{host}:{params.port}",
                index=params.index,
                lanes=self._lanes,
            )
            try:
                return await self._collect(session, params, version != "1" and params.use_bulk, ctx.limits)
            except NoResponseError as e:
                if refused_credential(session, version):
                    raise CredentialRejectedError(str(e)) from e
                raise
            finally:
                await session.close()
        finally:
            slot.users -= 1
            if slot.users == 0:
                del self._agent_slots[key]

    async def _collect(
        self, session: Session, params: SnmpParams, use_bulk: bool, limits: Limits
    ) -> ET.Element:
        result = ET.Element("result")
        tree = TreeBuilder(limits.snmp_result_bytes)
        cap = limits.snmp_varbinds
        count = 0
        for line in params.spec:
            if line.op in ("get", "getnext"):
                tree.scope(None)
                rows = await (session.get(line.oids) if line.op == "get" else session.getnext(line.oids))
            elif not line.filtered:
                # Rows go into the tree as the walk fetches them (in OID order): building it overlaps
                # the agent's work instead of following the whole walk.
                tree.scope(line.table or line.oids[0])
                full = False

                def put(rows: list[Row]) -> bool:
                    nonlocal count, full
                    for oid, value in rows:
                        if count >= cap or not tree.add(oid, value):
                            full = True
                            return False
                        count += 1
                    return True

                for root in line.oids:
                    # One more than fits, so a cut walk is seen; the bytes left in the result bound
                    # what a walk may hold (a hostile agent's values are big).
                    room, left = cap - count + 1, tree.room()
                    await session.walk(root, use_bulk, self._max_repetitions, room, left, put)
                    if full:
                        result.set("truncated", "true")
                        result.append(tree.root)
                        return result
                continue
            else:
                tree.scope(line.table or line.oids[0])
                rows = []
                for root in line.oids:
                    room = cap - count - len(rows) + 1  # one more than fits, so a cut walk is seen
                    # The bytes left in the result bound what a walk may hold (a hostile agent's
                    # values are big); the varbinds past them are cut below and marked truncated.
                    left = tree.room() - sum(row_bytes(o, v) for o, v in rows)
                    rows.extend(await session.walk(root, use_bulk, self._max_repetitions, room, left))
                rows = _filtered(line, rows)
            for oid, value in rows:
                if count >= cap or not tree.add(oid, value):
                    result.set("truncated", "true")
                    result.append(tree.root)
                    return result
                count += 1
        result.append(tree.root)
        return result

    async def aclose(self) -> None:
        await self._opener.aclose()


def _filtered(line: SpecLine, rows: list[Row]) -> list[Row]:
    """The rows of the table entries for which ANY column filter matches (ServiceNow's rule)."""
    width = len(line.columns[0].oid)
    texts: dict[Oid, dict[Oid, str]] = {}
    for oid, value in rows:
        texts.setdefault(oid[:width], {})[oid[width:]] = render(value)[1]
    keep = {
        instance
        for column in line.columns
        if column.op
        for instance, text in texts.get(column.oid, {}).items()
        if column.matches(text)
    }
    return [(oid, value) for oid, value in rows if oid[width:] in keep]


class _AgentSlot:
    """The request cap of one agent and how many jobs use it (so idle agents are forgotten)."""

    def __init__(self, sem: asyncio.Semaphore) -> None:
        self.sem = sem
        self.users = 0
