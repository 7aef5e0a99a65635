"""Problems as the instance sees them: ``ecc_agent_issue`` records and ``last_refreshed``.

ServiceNow's MID Server Issue table (``ecc_agent_issue``, *MID Server > Server Issues*, a related list
on the MID record) holds a MID's active issues with their source and state; records not detected for
30 days are removed and ongoing issues reappear. midbox keeps one open record per problem (source
``midbox.KEY``), updates it while the problem lasts, and sets it ``resolved`` when it clears. Like the
MID record, this never fights the instance: a refusal (401/403, or no such table) is logged once and
the appliance goes on without it until the next start.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from appliance.errors import InstanceAuthError, InstanceError
from appliance.health import Problem
from appliance.queue.midrecord import glide_now

if TYPE_CHECKING:
    from appliance.queue.client import EccClient

log = logging.getLogger(__name__)

SOURCE_PREFIX = "midbox."


class MidIssues:
    def __init__(self, client: EccClient) -> None:
        self._client = client
        self._agent: str | None = None
        self._open: dict[str, str] | None = None  # problem key -> sys_id, once read from the instance
        self._refused = False
        self._refresh_refused = False

    async def sync(self, problems: list[Problem]) -> None:
        """Open what is new, touch what lasts, resolve what cleared. Never raises."""
        if self._refused:
            return
        try:
            if self._agent is None:
                record = await self._client.agent_record()
                if record is None:
                    return  # no MID record yet: nothing to hang issues on
                self._agent = record.sys_id
            await self._refresh()
            if self._open is None:
                rows = await self._client.issue_records(self._agent)
                self._open = {r["source"][len(SOURCE_PREFIX) :]: r["sys_id"] for r in rows if r["sys_id"]}
            now = glide_now()
            current = {p.key: p for p in problems}
            for key, problem in current.items():
                fields = {"message": problem.message[:1000], "last_detected": now, "state": "new"}
                if key not in self._open:
                    fields.update(mid_server=self._agent, source=SOURCE_PREFIX + key)
                self._open[key] = await self._client.write_issue(self._open.get(key), fields)
            for key in [k for k in self._open if k not in current]:
                await self._client.write_issue(self._open.pop(key), {"state": "resolved"})
        except InstanceAuthError:
            self._refused = True
            log.warning(
                "the instance refused this MID's ecc_agent_issue records (an ACL or a business rule); "
                "problems stay in 'midbox status' only: grant the mid_server role write access to "
                "ecc_agent_issue to see them on the instance"
            )
        except InstanceError as e:
            if "404" in str(e) or "not found" in str(e).lower():
                self._refused = True
                log.warning("the instance has no ecc_agent_issue table; problems stay in 'midbox status'")
            else:
                log.warning("could not update this MID's issue records: %s", e)

    async def _refresh(self) -> None:
        if self._refresh_refused or self._agent is None:
            return
        try:
            await self._client.refresh(self._agent)
        except InstanceAuthError:
            self._refresh_refused = True
            log.warning(
                "the instance refused last_refreshed on this MID's ecc_agent record; going on without it"
            )
