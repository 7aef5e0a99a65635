"""ECC queue records as the Table API returns them, parsed strictly into frozen dataclasses."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from appliance.errors import InstanceError

_SYS_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")

OUTPUT_FIELDS = (
    "sys_id",
    "agent",
    "topic",
    "name",
    "source",
    "payload",
    "queue",
    "state",
    "response_to",
    "agent_correlator",
    "priority",
    "sequence",
    "sys_created_on",
)


@dataclass(frozen=True)
class OutputRecord:
    """One ``queue=output`` record addressed to this appliance. Its payload is still untrusted text."""

    sys_id: str
    agent: str
    topic: str
    name: str
    source: str
    payload: str
    state: str
    agent_correlator: str
    priority: str
    sys_created_on: str
    # Defaults: journal and outbox entries written before these fields existed still load.
    sequence: str = ""
    response_to: str = ""

    def echo(self) -> dict[str, str]:
        """The fields a result echoes back to the instance, as the MID does: public results carry the
        output's sys_id as ``ecc_queue`` beside ``sequence``, ``sys_created_on`` and ``response_to``
        (``skip_sensor``, when the instance sets it, is a payload parameter and is echoed with them)."""
        return {
            "agent": self.agent,
            "topic": self.topic,
            "name": self.name,
            "source": self.source,
            "sys_id": self.sys_id,
            "ecc_queue": self.sys_id,
            "response_to": self.response_to,
            "agent_correlator": self.agent_correlator,
            "priority": self.priority,
            "sequence": self.sequence,
            "sys_created_on": self.sys_created_on,
        }


def _str(raw: dict[str, Any], key: str, required: bool = False) -> str:
    value = raw.get(key, "")
    # The Table API may send reference fields as {"value": .., "link": ..}.
    if isinstance(value, dict):
        value = value.get("value", "")
    if value is None:
        value = ""
    if not isinstance(value, str):
        value = str(value)
    if required and not value:
        raise InstanceError(f"the instance sent an ecc_queue record without {key!r}")
    return value


def parse_output(raw: object) -> OutputRecord:
    if not isinstance(raw, dict):
        raise InstanceError("the instance sent an ecc_queue record that is not a JSON object")
    sys_id = _str(raw, "sys_id", required=True)
    # sys_ids go back into encoded queries and file names: only the instance's own alphabet passes.
    if not _SYS_ID.fullmatch(sys_id):
        raise InstanceError(f"the instance sent an ecc_queue record with a malformed sys_id {sys_id[:40]!r}")
    return OutputRecord(
        sys_id=sys_id,
        agent=_str(raw, "agent"),
        topic=_str(raw, "topic"),
        name=_str(raw, "name"),
        source=_str(raw, "source"),
        payload=_str(raw, "payload"),
        state=_str(raw, "state"),
        agent_correlator=_str(raw, "agent_correlator"),
        priority=_str(raw, "priority") or "2",
        sys_created_on=_str(raw, "sys_created_on"),
        sequence=_str(raw, "sequence"),
        response_to=_str(raw, "response_to"),
    )
