"""The SNMP scanner of a Shazzam job: a GET of sysDescr.0 over UDP with the credentials allowed there.

The job carries no credential (a real one does not): ``credchoice`` gives the aliases of the rules
covering (snmp, address, port), tried in order, affinity first. Each is sent ``SNMP_taps`` times,
``SNMP_tapIntervalMS`` apart, and waits that long for the answer to any tap; silence counts as the
agent refusing that community (v2c agents drop a wrong community without a word), so the next one is
tried. v2c goes through midbox's own BER codec, v3 through pysnmp with one engine per job.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

from appliance.errors import CredentialRejected, ProbeError
from appliance.payload import one_line
from appliance.probes._shazzamscanners import Outcome
from appliance.probes._shazzamspec import Tuning
from appliance.probes._snmpsession import (
    FastV2cSession,
    PysnmpSession,
    Row,
    Session,
    community_of,
    pysnmp_auth,
)
from appliance.probes._snmpv2c import V2cChannel
from appliance.probes._xmltext import xml_text
from appliance.probes.base import Credential, Job, ProbeContext
from appliance.probes.credchoice import with_credentials
from hardening.policy import IPAddress

SNMP_TYPES = frozenset({"snmp-community", "snmp-usm"})
SYS_DESCR = (1, 3, 6, 1, 2, 1, 1, 1, 0)


class SnmpScanner:
    """One per Shazzam job; ``aclose`` releases the v3 engine if one was started."""

    def __init__(self, ctx: ProbeContext, job: Job) -> None:
        self._ctx = ctx
        self._job = job
        self._engine: Any = None
        self._index_key = secrets.token_bytes(32)  # see SnmpProbe: pysnmp caches communities by index

    async def scan(self, address: IPAddress, port: int, tuning: Tuning) -> Outcome:
        where = f"{address}:{port}"

        async def attempt(alias: str, credential: Credential) -> Outcome:
            session = await self._session(credential, alias, address, port, tuning, where)
            try:
                rows = await session.get((SYS_DESCR,))
            except ProbeError as e:
                if "no SNMP response" in str(e) or "authentication" in str(e):
                    raise CredentialRejected(str(e)) from e
                raise
            finally:
                await session.close()
            return _answered(rows)

        try:
            return await with_credentials(
                self._ctx,
                self._job,
                probe="snmp",
                types=SNMP_TYPES,
                target=str(address),
                address=address,
                port=port,
                attempt=attempt,
            )
        except ProbeError as e:
            if "refused every credential" in str(e):
                return Outcome("timed_out", (("error_msg", "no SNMP answer to any credential allowed here"),))
            return Outcome("io_error", (("error_msg", one_line(str(e), 300)),))

    async def _session(
        self, credential: Credential, alias: str, address: IPAddress, port: int, tuning: Tuning, where: str
    ) -> Session:
        retries = tuning.snmp_taps - 1
        sem = asyncio.Semaphore(1)
        if credential.type == "snmp-community":
            community = community_of(credential, alias)
            channel = V2cChannel(address, port, community, tuning.snmp_tap_interval_s, retries, where)
            await channel.open()
            return FastV2cSession(channel, sem, where)
        auth = pysnmp_auth(credential, alias, "3", self._index_key)
        from pysnmp.hlapi.v3arch.asyncio import SnmpEngine, Udp6TransportTarget, UdpTransportTarget

        if self._engine is None:
            self._engine = SnmpEngine()
        cls = Udp6TransportTarget if address.version == 6 else UdpTransportTarget
        target = await cls.create((str(address), port), timeout=tuning.snmp_tap_interval_s, retries=retries)
        return PysnmpSession(self._engine, auth, target, sem, where, tuning.snmp_tap_interval_s, retries)

    async def aclose(self) -> None:
        if self._engine is not None:
            self._engine.close_dispatcher()
            self._engine = None


def _answered(rows: list[Row]) -> Outcome:
    """The agent answered: the port is open; sysDescr when it has one (it may hide it from this view)."""
    for oid, (smi, value) in rows:
        if oid == SYS_DESCR and smi == "OctetString" and isinstance(value, bytes):
            return Outcome("open", (("sysDescr", xml_text(value).strip()),))
    return Outcome("open")
