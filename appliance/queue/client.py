"""The ECC queue over the REST Table API, as ecc-protocol.md describes it.

Every instance answer is size-capped and parsed strictly; every httpx error is translated here.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from appliance.errors import InstanceError
from appliance.payload import with_parameters
from appliance.queue.answers import (
    check_response,
    read_capped,
    result_list,
    ssl_reason,
    transport_reason,
)
from appliance.queue.midrecord import (
    AGENT_READ_FIELDS,
    AGENT_TABLE,
    AgentRecord,
    AgentWrite,
    agent_fields,
    glide_now,
    parse_agent_record,
)
from appliance.queue.records import OUTPUT_FIELDS, OutputRecord, UnusableRecordError, parse_output

ISSUE_TABLE = "/api/now/table/ecc_agent_issue"
log = logging.getLogger(__name__)

TABLE = "/api/now/table/ecc_queue"
# Parameters of every input the appliance posts on its own: no sensor waits for those, so the
# instance may close them at once instead of leaving them in state ready.
UNSOLICITED_PARAMETERS = {"skip_sensor": "true"}


@dataclass(frozen=True)
class Polled:
    """A poll's usable records (at most the limit asked for) and why any others were skipped."""

    records: list[OutputRecord]
    skipped: list[str]


class EccClient:
    """One appliance's view of the instance's ``ecc_queue`` table."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        name: str,
        max_response_bytes: int,
        deadline_s: float | None = None,
    ) -> None:
        self._http = http
        self._name = name
        self._agent = f"mid.server.{name}"
        self._max = max_response_bytes
        # Per-read timeouts do not end a server that sends one byte at a time: this ends every request.
        self._deadline_s = deadline_s

    @property
    def agent(self) -> str:
        return self._agent

    async def aclose(self) -> None:
        await self._http.aclose()

    # 1. Poll
    async def poll(
        self,
        limit: int,
        state: str = "ready",
        topic: str | tuple[str, ...] | None = None,
        fields: Sequence[str] = OUTPUT_FIELDS,
    ) -> Polled:
        """Up to ``limit`` records, parsed one by one: a bad record is skipped or refused, never the poll.

        ``topic``: only that topic, or any of several (``topicINa,b``)."""
        if isinstance(topic, tuple):
            only = f"^topicIN{','.join(topic)}"
        else:
            only = f"^topic={topic}" if topic else ""
        query = f"agent={self._agent}^queue=output^state={state}{only}^ORDERBYpriority^ORDERBYsys_created_on"
        body = await self._request(
            "GET",
            TABLE,
            params={
                "sysparm_query": query,
                "sysparm_limit": str(limit),
                "sysparm_fields": ",".join(fields),
            },
        )
        records: list[OutputRecord] = []
        skipped: list[str] = []
        seen: set[str] = set()
        # More rows than asked for are left on the queue: the limit is what our free slots allow.
        for raw in result_list(body)[: max(limit, 0)]:
            try:
                record = parse_output(raw)
            except UnusableRecordError as e:
                skipped.append(str(e))
                continue
            # A record for another agent would mean the instance ignored our query: never run it.
            if record.agent != self._agent or record.sys_id in seen:
                continue
            seen.add(record.sys_id)
            records.append(record)
        return Polled(records, skipped)

    # 2. Claim
    async def claim(self, records: Sequence[OutputRecord]) -> None:
        root = ET.Element("queue.processing", output_message_count=str(len(records)))
        for r in records:
            ET.SubElement(root, "sys_id", state="processing").text = r.sys_id
        await self._insert(
            {
                "agent": self._agent,
                "queue": "input",
                "topic": "queue.processing",
                "name": "queue.processing",
                "source": self._name,
                "state": "ready",
                "payload": ET.tostring(root, encoding="unicode"),
            }
        )

    # 4. Respond
    async def respond(self, record: OutputRecord, payload: str, error: str | None) -> str:
        fields = {
            "agent": self._agent,
            "queue": "input",
            "state": "ready",
            "topic": record.topic,
            "name": record.name,
            "source": record.source,
            "response_to": record.sys_id,
            "agent_correlator": record.agent_correlator,
            "payload": payload,
        }
        if error:
            fields["error_string"] = error
        created = await self._insert(fields)
        return str(created.get("sys_id", ""))

    async def post_input(self, *, topic: str, name: str, payload: str) -> None:
        """An input record that answers no output (audit checkpoints); it carries ``skip_sensor``."""
        payload = with_parameters(payload, UNSOLICITED_PARAMETERS, self._max)
        await self._insert(
            {
                "agent": self._agent,
                "queue": "input",
                "state": "ready",
                "topic": topic,
                "name": name,
                "source": self._name,
                "payload": payload,
            }
        )

    async def has_response(self, output_sys_id: str) -> bool:
        """True if any MID already posted an input for that output (so a re-send would duplicate it).

        Not filtered by agent: after a cluster failover another member may have answered it.
        """
        query = f"queue=input^response_to={output_sys_id}"
        body = await self._request(
            "GET", TABLE, params={"sysparm_query": query, "sysparm_limit": "1", "sysparm_fields": "sys_id"}
        )
        return bool(result_list(body))

    # 5. Liveness
    async def agent_record(self) -> AgentRecord | None:
        """This MID's ``ecc_agent`` record (``name=NAME``), or None where the instance has none."""
        body = await self._request(
            "GET",
            AGENT_TABLE,
            params={
                "sysparm_query": f"name={self._name}",
                "sysparm_limit": "1",
                "sysparm_fields": ",".join(AGENT_READ_FIELDS),
            },
        )
        rows = result_list(body)
        if not rows:
            return None
        return parse_agent_record(rows[0])

    async def set_status(
        self, status: str, *, host_name: str, ip_address: str = ""
    ) -> tuple[AgentWrite, AgentRecord | None]:
        """Say Up (at start) or Down (at stop) on this MID's ``ecc_agent`` record, creating it at
        start where the instance has none, as a MID does when it first connects.

        Returns what was done and the record as it was before. Raises InstanceAuthError where a
        business rule or an ACL refuses the read or the write.
        """
        now = glide_now()
        fields = {"status": status, "last_refreshed": now}
        if status == "Up":
            fields.update(started=now, host_name=host_name)
            if ip_address:
                fields["ip_address"] = ip_address
        else:
            fields["stopped"] = now
        record = await self.agent_record()
        if record is None:
            if status != "Up":
                return AgentWrite.MISSING, None
            await self._request("POST", AGENT_TABLE, json_body=agent_fields({"name": self._name, **fields}))
            return AgentWrite.CREATED, None
        await self._request("PATCH", f"{AGENT_TABLE}/{record.sys_id}", json_body=agent_fields(fields))
        return AgentWrite.UPDATED, record

    async def issue_records(self, agent_sys_id: str) -> list[dict[str, str]]:
        """This MID's open ``ecc_agent_issue`` records that midbox raised (source ``midbox.*``)."""
        body = await self._request(
            "GET",
            ISSUE_TABLE,
            params={
                "sysparm_query": f"mid_server={agent_sys_id}^state!=resolved",
                "sysparm_limit": "100",
                "sysparm_fields": "sys_id,source,state",
            },
        )
        rows = [r for r in result_list(body) if isinstance(r, dict)]
        found = [{k: str(r.get(k, ""))[:200] for k in ("sys_id", "source", "state")} for r in rows]
        return [r for r in found if r["source"].startswith("midbox.")]

    async def write_issue(self, sys_id: str | None, fields: dict[str, str]) -> str:
        """Open (no ``sys_id``) or update an ``ecc_agent_issue`` record; returns its sys_id."""
        if sys_id is None:
            body = await self._request("POST", ISSUE_TABLE, json_body=fields)
        else:
            body = await self._request("PATCH", f"{ISSUE_TABLE}/{sys_id}", json_body=fields)
        result = body.get("result")
        new_id = str(result.get("sys_id", "")) if isinstance(result, dict) else ""
        return new_id or sys_id or ""

    async def refresh(self, agent_sys_id: str) -> None:
        """``last_refreshed`` on this MID's record: the instance's view of when it last heard from it."""
        await self._request(
            "PATCH", f"{AGENT_TABLE}/{agent_sys_id}", json_body=agent_fields({"last_refreshed": glide_now()})
        )

    async def _insert(self, fields: dict[str, str]) -> dict[str, Any]:
        body = await self._request("POST", TABLE, json_body=fields)
        result = body.get("result")
        if not isinstance(result, dict):
            raise InstanceError("the instance answered an insert without a 'result' object")
        return result

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        json_body: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        content = json.dumps(json_body).encode() if json_body is not None else None
        try:
            async with (
                asyncio.timeout(self._deadline_s),
                self._http.stream(method, path, params=params, content=content) as response,
            ):
                data = await read_capped(response, self._max)
        except TimeoutError as e:
            raise InstanceError(
                f"the instance did not finish its answer within {self._deadline_s:g} s; retrying later"
            ) from e
        except httpx.TimeoutException as e:
            raise InstanceError(f"the instance did not answer in time ({type(e).__name__})") from e
        except httpx.TransportError as e:
            raise InstanceError(f"cannot reach the instance: {transport_reason(e)}") from e
        except (ssl.SSLError, OSError) as e:
            # Under TLS 1.3 a refused client certificate surfaces on the first read, unwrapped by httpx.
            raise InstanceError(f"the instance closed the TLS connection: {ssl_reason(e)}") from e
        return check_response(response, data)
