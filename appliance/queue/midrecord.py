"""This MID's ``ecc_agent`` record: what midbox reads and writes there, and when.

A MID's record is created when it first connects; the instance's MID Server Monitor (HeartbeatProbe)
then drives Up/Down, and only Up and Validated MIDs are selected for work. midbox says Up at start and
Down at stop where the instance lets it, never writes ``version`` (a differing version starts an
auto-upgrade on a real instance), and never fights a refusal: a 401/403 from a business rule or an ACL
is logged once and the appliance goes on (docs/servicenow.md, "The MID record").
"""

from __future__ import annotations

import datetime as dt
import enum
import logging
from dataclasses import dataclass
from typing import Protocol

from appliance.errors import InstanceAuthError, InstanceError

log = logging.getLogger(__name__)

AGENT_TABLE = "/api/now/table/ecc_agent"
AGENT_READ_FIELDS = ("sys_id", "name", "status", "validated", "host_name")
# The only ecc_agent columns midbox writes. Never ``version``: a real instance compares it with its
# MID buildstamp and starts an auto-upgrade of a MID whose version differs.
AGENT_WRITABLE = frozenset(
    {"name", "status", "host_name", "ip_address", "started", "stopped", "last_refreshed"}
)


class AgentWrite(enum.Enum):
    CREATED = "created"
    UPDATED = "updated"
    MISSING = "missing"  # no record, and nothing to say about a MID that was never registered


@dataclass(frozen=True)
class AgentRecord:
    """This MID's ``ecc_agent`` record as the instance shows it."""

    sys_id: str
    name: str
    status: str
    validated: str

    @property
    def is_validated(self) -> bool:
        return self.validated.strip().lower() in ("true", "yes")


class AgentStatusWriter(Protocol):
    """What MidRecord needs of EccClient, named here so the two modules do not import each other."""

    async def set_status(
        self, status: str, *, host_name: str, ip_address: str = ""
    ) -> tuple[AgentWrite, AgentRecord | None]: ...


class MidRecord:
    """Up at start, Down at stop, on the client's instance. Never fatal, never retried: the instance's
    MID Server Monitor and its own rules have the last word on this record."""

    def __init__(self, client: AgentStatusWriter, *, host_name: str, ip_address: str = "") -> None:
        self._client = client
        self._host_name = host_name
        self._ip_address = ip_address
        self._refused = False  # the instance refused an ecc_agent read or write: ask no more

    async def announce(self, status: str) -> None:
        if self._refused:
            return
        try:
            outcome, record = await self._client.set_status(
                status, host_name=self._host_name, ip_address=self._ip_address
            )
        except InstanceAuthError:
            self._refused = True
            log.warning(
                "the instance refused to let this MID read or write its ecc_agent record (a business "
                "rule or an ACL); going on without it: have an admin create the record as "
                "docs/servicenow.md says and check it with 'midbox doctor'"
            )
            return
        except InstanceError as e:
            log.warning("could not set this MID's ecc_agent status to %s: %s", status, e)
            return
        if status != "Up":
            return
        if outcome is AgentWrite.CREATED or (record is not None and not record.is_validated):
            # Only Up and Validated MIDs are selected: without this the appliance just sits idle.
            log.warning(
                "this MID's ecc_agent record is not validated, so the instance will not select it for "
                "work; an admin validates it (docs/servicenow.md, 'Validation')"
            )


def agent_fields(fields: dict[str, str]) -> dict[str, str]:
    unknown = set(fields) - AGENT_WRITABLE
    if unknown:  # a wiring mistake, never data: refuse before anything reaches the instance
        raise ValueError(f"refusing to write ecc_agent column(s) {sorted(unknown)}")
    return fields


def parse_agent_record(raw: object) -> AgentRecord:
    if not isinstance(raw, dict):
        raise InstanceError("the instance sent an ecc_agent record that is not a JSON object")

    def text(key: str) -> str:
        value = raw.get(key, "")
        if isinstance(value, dict):
            value = value.get("value", "")
        return str(value if value is not None else "")[:200]

    sys_id = text("sys_id")
    if not sys_id or not sys_id.replace("-", "").replace("_", "").isalnum():
        raise InstanceError("the instance sent an ecc_agent record without a usable sys_id")
    return AgentRecord(sys_id=sys_id, name=text("name"), status=text("status"), validated=text("validated"))


def glide_now() -> str:
    """Now as the Table API's internal date-time (UTC, ``YYYY-MM-DD HH:MM:SS``)."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
