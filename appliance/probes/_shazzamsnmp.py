"""The SNMP scanner of a Shazzam job: a GET of sysDescr.0 over UDP with the credentials allowed there.

The job carries no credential (a real one does not): ``credchoice`` gives the aliases of the rules
covering (snmp, address, port), tried in order, affinity first. Each is sent ``SNMP_taps`` times,
``SNMP_tapIntervalMS`` apart, and waits that long for the answer to any tap; silence counts as the
agent refusing that community (v2c agents drop a wrong community without a word), so the next one is
tried. Sessions open through the SNMP probe's own ``SessionOpener`` (v1, v2c and v3 over midbox's own
BER codec); a v1 community is tried only where the rule says ``snmp_v1``.
"""

from __future__ import annotations

import asyncio

from appliance.credtypes import PROBE_TYPES
from appliance.errors import CredentialRejectedError, EveryCredentialRejectedError, ProbeError
from appliance.interfaces import Credential
from appliance.payload import one_line, xml_text
from appliance.probes._shazzamscanners import Outcome
from appliance.probes._shazzamspec import Tuning
from appliance.probes.base import Job, ProbeContext
from appliance.probes.credchoice import with_credentials
from appliance.probes.snmp.opener import (
    SessionOpener,
    credential_version,
    refused_credential,
    v1_allowed,
)
from appliance.probes.snmp.session import Row
from appliance.probes.snmp.v2c import NoResponseError
from hardening.policy import IPAddress

SYS_DESCR = (1, 3, 6, 1, 2, 1, 1, 1, 0)


class SnmpScanner:
    """The SNMP scanner of one Shazzam job, on the session opener of the appliance's SNMP probe."""

    def __init__(self, ctx: ProbeContext, job: Job, opener: SessionOpener) -> None:
        self._ctx = ctx
        self._job = job
        self._opener = opener

    async def scan(self, address: IPAddress, port: int, tuning: Tuning) -> Outcome:
        where = f"{address}:{port}"

        async def attempt(alias: str, credential: Credential) -> Outcome:
            version = credential_version(credential, alias)
            if version == "1" and not v1_allowed(self._ctx, address, port, alias, None):
                raise CredentialRejectedError(f"SNMPv1 is not enabled for {where} and {alias!r}")
            session = await self._opener.open(
                credential,
                alias,
                version,
                address,
                port,
                timeout_s=tuning.snmp_tap_interval_s,
                retries=tuning.snmp_taps - 1,
                sem=asyncio.Semaphore(1),
                where=where,
            )
            try:
                rows = await session.get((SYS_DESCR,))
            except NoResponseError as e:
                if refused_credential(session, version):
                    raise CredentialRejectedError(str(e)) from e
                raise
            finally:
                await session.close()
            return _answered(rows)

        try:
            return await with_credentials(
                self._ctx,
                self._job,
                probe="snmp",
                types=PROBE_TYPES["snmp"],
                target=str(address),
                address=address,
                port=port,
                attempt=attempt,
            )
        except (NoResponseError, EveryCredentialRejectedError):
            return Outcome("timed_out", (("error_msg", "no SNMP answer to any credential allowed here"),))
        except ProbeError as e:
            return Outcome("io_error", (("error_msg", one_line(str(e), 300)),))


def _answered(rows: list[Row]) -> Outcome:
    """The agent answered: the port is open; sysDescr when it has one (it may hide it from this view)."""
    for oid, (smi, value) in rows:
        if oid == SYS_DESCR and smi == "OctetString" and isinstance(value, bytes):
            return Outcome("open", (("sysDescr", xml_text(value).strip()),))
    return Outcome("open")
