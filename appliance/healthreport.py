"""What the runner tells the world about its health after every poll: the status file (and whatever
else ``after_poll`` feeds: systemd, the metrics file) and the instance's ``ecc_agent_issue`` records.

Neither may slow or stop the work: a status file that cannot be written is logged once, and issue
records are synced in the background, at most every ``ISSUE_SYNC_S`` unless the problems change.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from appliance.errors import InstanceError
from appliance.health import Health
from appliance.queue.durable import Journal
from appliance.queue.midissues import MidIssues

# The runner's own logger: these lines are part of what the runner reports.
log = logging.getLogger("appliance.runner")

ISSUE_SYNC_S = 60.0  # ecc_agent_issue records and last_refreshed, at most this often unless problems change
ISSUE_SYNC_FINISH_S = 5.0  # at shutdown, how long a sync under way may still take


class HealthReport:
    def __init__(
        self,
        health: Health,
        issues: MidIssues,
        journal: Journal,
        unsent: Callable[[], int],
        after_poll: Callable[[Health], None] | None,
    ) -> None:
        self._health = health
        self._issues = issues
        self._journal = journal
        self._unsent = unsent  # the outbox's results not sent yet (sent ones may wait to be removed)
        self._after_poll = after_poll
        self._publish_failed = False
        self._issues_task: asyncio.Task[None] | None = None
        self._issues_at = -ISSUE_SYNC_S  # monotonic time of the last sync; the first poll syncs
        self._issues_seen: frozenset[str] = frozenset()

    def polled(self, error: InstanceError | None) -> None:
        if error is None:
            self._health.poll_ok()
            self._sync_issues()
        else:
            self._health.poll_failed(str(error))
        self.publish()

    def _sync_issues(self) -> None:
        """Issue records and last_refreshed on the instance: when the problems change, else every
        ISSUE_SYNC_S; in the background, so the poll loop never waits for it."""
        problems = self._health.problems()
        keys = frozenset(p.key for p in problems)
        due = time.monotonic() - self._issues_at >= ISSUE_SYNC_S or keys != self._issues_seen
        if not due or (self._issues_task is not None and not self._issues_task.done()):
            return
        self._issues_at, self._issues_seen = time.monotonic(), keys
        self._issues_task = asyncio.create_task(self._issues.sync(problems), name="issues")

    def publish(self) -> None:
        """Health out after every poll; a status file that cannot be written never stops the work."""
        self._health.outbox_depth = self._unsent()
        self._health.journal_depth = self._journal.count()
        if self._after_poll is None:
            return
        try:
            self._after_poll(self._health)
            self._publish_failed = False
        except OSError as e:
            if not self._publish_failed:
                log.warning("could not write the status file: %s; check the state dir's space", e.strerror)
            self._publish_failed = True

    async def finish(self) -> None:
        """At shutdown: a sync under way gets a few seconds, then it is cancelled."""
        if self._issues_task is None:
            return
        await asyncio.wait({self._issues_task}, timeout=ISSUE_SYNC_FINISH_S)
        self._issues_task.cancel()
