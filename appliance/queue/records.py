"""ECC queue records as the Table API returns them, parsed strictly into frozen dataclasses.

Parsing is decided per record, never per answer: a record whose sys_id cannot be used is skipped
(UnusableRecordError); one whose sys_id is fine but whose other fields are not usable text becomes a record
with ``refusal`` set and cleaned fields, which the appliance answers with an error result.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

from appliance.errors import InstanceError
from appliance.limits import MAX_RECORD_FIELD_CHARS

_SYS_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
# What a record's head is read with when the whole record is too large for one answer.
ID_FIELDS = ("sys_id", "agent")
HEAD_FIELDS = ("sys_id", "agent", "topic", "name", "source", "agent_correlator", "priority", "sys_created_on")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


class UnusableRecordError(InstanceError):
    """A record whose sys_id cannot be used: it cannot be claimed or answered, only skipped."""


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
    # Set when the record cannot be run as sent (a field that is not text, or too large): the reason,
    # answered as an error result. Its text fields were cleaned so that they can be echoed and logged.
    refusal: str = ""

    def refused(self, reason: str) -> OutputRecord:
        return replace(self, payload="", refusal=self.refusal or reason)

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


class _Fields:
    """Reads one record's fields, noting the first that is not usable text instead of failing."""

    def __init__(self, raw: dict[str, Any]) -> None:
        self._raw = raw
        self.problem = ""

    def text(self, key: str) -> str:
        value = self._raw.get(key, "")
        # The Table API may send reference fields as {"value": .., "link": ..}.
        if isinstance(value, dict) and set(value) <= {"value", "link", "display_value"}:
            value = value.get("value", "")
        if value is None:
            value = ""
        if isinstance(value, bool | int | float):
            value = str(value)
        if not isinstance(value, str):
            self._note(f"field {key!r} is not text ({type(value).__name__})")
            return ""
        if key != "payload" and len(value) > MAX_RECORD_FIELD_CHARS:
            self._note(f"field {key!r} is longer than {MAX_RECORD_FIELD_CHARS} characters")
            return value[:MAX_RECORD_FIELD_CHARS]
        if _LONE_SURROGATE.search(value):
            # Legal in JSON, but not text: it cannot be encoded, logged, stored or echoed as it is.
            self._note(f"field {key!r} is not valid text (a lone UTF-16 surrogate)")
            return _LONE_SURROGATE.sub("\ufffd", value)
        return value

    def _note(self, problem: str) -> None:
        self.problem = self.problem or problem


def parse_output(raw: object) -> OutputRecord:
    """One record of a query answer. Raises UnusableRecordError when its sys_id cannot be used; any other
    problem gives a record with ``refusal`` set (answered with an error, never run)."""
    if not isinstance(raw, dict):
        raise UnusableRecordError("the instance sent an ecc_queue record that is not a JSON object")
    fields = _Fields(raw)
    sys_id = fields.text("sys_id")
    if fields.problem or not sys_id:
        raise UnusableRecordError(
            f"the instance sent an ecc_queue record without a usable sys_id ({fields.problem or 'empty'})"
        )
    # sys_ids go back into encoded queries and file names: only the instance's own alphabet passes.
    if not _SYS_ID.fullmatch(sys_id):
        raise UnusableRecordError(
            f"the instance sent an ecc_queue record with a malformed sys_id {sys_id[:40]!r}"
        )
    record = OutputRecord(
        sys_id=sys_id,
        agent=fields.text("agent"),
        topic=fields.text("topic"),
        name=fields.text("name"),
        source=fields.text("source"),
        payload=fields.text("payload"),
        state=fields.text("state"),
        agent_correlator=fields.text("agent_correlator"),
        priority=fields.text("priority") or "2",
        sys_created_on=fields.text("sys_created_on"),
        sequence=fields.text("sequence"),
        response_to=fields.text("response_to"),
    )
    if fields.problem:
        return record.refused(
            f"the output record cannot be run: its {fields.problem}; fix the record on the instance"
        )
    return record
