"""Results out: kept results go from the durable outbox to the instance, exactly once as it sees them.

Delivery is at-least-once on the wire: a result leaves the outbox only when the instance confirmed
it, and a re-send after any doubt (a timeout, a 5xx, a restart) first asks the instance whether an
answer is already there. 429/503 and 401/403 are refused before any insert, so they leave no doubt."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable

from appliance.aio import wait_any
from appliance.errors import InstanceAuthError, InstanceError, is_fatal
from appliance.interfaces import AuditSink, Outcome
from appliance.queue.answers import InstanceBusyError
from appliance.queue.backoff import Backoff
from appliance.queue.client import EccClient
from appliance.queue.records import OutputRecord
from appliance.runstats import RunnerStats

log = logging.getLogger(__name__)

SENDERS = 8
ABANDON_GRACE_S = 5.0  # after the delivery deadline: the sender in flight gets this long to finish


class Delivery:
    """``SENDERS`` workers that post kept results; what they cannot post stays in the outbox."""

    def __init__(
        self,
        *,
        client: EccClient,
        close: Callable[[str], None],
        audit: AuditSink,
        stats: RunnerStats,
        backoff: Callable[[], Backoff],
        on_sent: Callable[[], None],
        on_fatal: Callable[[BaseException], None],
    ) -> None:
        self._client = client
        self._close = close  # the instance has this result: its outbox entry goes (blocking disk work)
        self._audit = audit
        self._stats = stats
        self._backoff = backoff
        self._on_sent = on_sent  # a result left (or gave up): a claim slot may be free again
        self._on_fatal = on_fatal
        self._queue: asyncio.Queue[tuple[OutputRecord, Outcome, bool]] = asyncio.Queue()
        self._unsent = 0
        self._abandon = asyncio.Event()  # delivery deadline passed: leave the rest in the outbox
        self._senders: list[asyncio.Task[None]] = []

    @property
    def unsent(self) -> int:
        return self._unsent

    def start(self) -> None:
        self._senders = [asyncio.create_task(self._sender(), name=f"sender-{i}") for i in range(SENDERS)]

    def send(self, record: OutputRecord, outcome: Outcome, *, check_first: bool) -> None:
        """Hand a result that is already in the outbox to the senders; ``check_first`` when an
        earlier try may have got through."""
        self._unsent += 1
        self._queue.put_nowait((record, outcome, check_first))

    async def drain(self, deadline_s: float) -> None:
        """Send what is queued within ``deadline_s``; then stop the senders."""
        if self._unsent:
            waiter = asyncio.create_task(self._queue.join())
            await asyncio.wait({waiter}, timeout=deadline_s)
            if not waiter.done():
                self._abandon.set()
                await asyncio.wait({waiter}, timeout=ABANDON_GRACE_S)
            waiter.cancel()
        for task in self._senders:
            task.cancel()
        await asyncio.gather(*self._senders, return_exceptions=True)

    async def _sender(self) -> None:
        while True:
            record, outcome, check_first = await self._queue.get()
            try:
                await self._deliver(record, outcome, check_first)
            except Exception as e:
                if is_fatal(e):
                    self._on_fatal(e)
                    return
                # Kept in the outbox (tried again at the next start); the other results go on.
                self._stats.undelivered += 1
                log.error("result for %s not sent: unexpected %s", record.sys_id, type(e).__name__)
            finally:
                self._unsent -= 1
                self._queue.task_done()
                self._on_sent()

    async def _deliver(self, record: OutputRecord, outcome: Outcome, ambiguous: bool) -> None:
        backoff = self._backoff()
        while True:
            try:
                if ambiguous and await self._client.has_response(record.sys_id):
                    # An earlier try (or another cluster member) got through: sending again would duplicate.
                    self._stats.duplicates_avoided += 1
                    await asyncio.to_thread(self._close, record.sys_id)
                    self._audit.record("result.already_posted", {"job": record.sys_id})
                    return
                input_id = await self._client.respond(record, outcome.payload, outcome.error)
            except InstanceError as e:
                # 429/503/401/403 were refused before any insert; anything else may have been applied.
                ambiguous = ambiguous or not isinstance(e, (InstanceBusyError, InstanceAuthError))
                if self._abandon.is_set():
                    self._stats.undelivered += 1
                    log.warning(
                        "result for %s stays in the outbox until the next start: %s", record.sys_id, e
                    )
                    return
                await wait_any(self._abandon, timeout=backoff.next_delay(e.retry_after_s))
                continue
            await asyncio.to_thread(self._close, record.sys_id)
            self._stats.answered += 1
            if outcome.error:
                self._stats.errors += 1
            self._audit.record(
                "result.posted",
                {
                    "job": record.sys_id,
                    "input_sys_id": input_id,
                    "result_code": 1 if outcome.error else 0,
                    "result_sha256": hashlib.sha256(outcome.payload.encode()).hexdigest(),
                    "bytes": len(outcome.payload.encode()),
                },
            )
            return
