"""Polling that a hostile or oversized record cannot block: the batch shrinks to fit the answer cap."""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import replace

from appliance.interfaces import AuditSink
from appliance.queue.answers import AnswerTooLargeError
from appliance.queue.client import EccClient
from appliance.queue.records import HEAD_FIELDS, ID_FIELDS, OutputRecord
from appliance.results import TOO_LARGE_ERROR

log = logging.getLogger(__name__)


class Fetcher:
    """Polls for up to a batch of records. An answer too large for the cap is asked for again with
    half the batch, down to one record; a single record too large is read by its head fields only
    and answered with an error, so it cannot block the queue. The batch regrows on success."""

    def __init__(self, client: EccClient, audit: AuditSink, *, batch: int, answer_bytes: int) -> None:
        self._client = client
        self._audit = audit
        self._batch = max(1, batch)
        self._answer_bytes = answer_bytes
        self._cap = self._batch  # halved on each answer too large, regrown on success

    async def fetch(
        self,
        want: int,
        *,
        state: str = "ready",
        topic: str | tuple[str, ...] | None = None,
        running: Collection[str] = (),
    ) -> list[OutputRecord]:
        """Up to ``want`` records, none of them in ``running`` (the jobs already started)."""
        while True:
            limit = max(1, min(want, self._cap))
            try:
                polled = await self._client.poll(limit, state=state, topic=topic)
            except AnswerTooLargeError as e:
                if limit > 1:
                    self._cap = max(1, limit // 2)
                    log.warning("%s; asking for %d record(s) at a time", e, self._cap)
                    continue
                try:
                    head = await self._client.poll(1, state=state, topic=topic, fields=HEAD_FIELDS)
                except AnswerTooLargeError:  # even its name or source is huge: answer by sys_id alone
                    head = await self._client.poll(1, state=state, topic=topic, fields=ID_FIELDS)
                refusal = TOO_LARGE_ERROR.format(cap=self._answer_bytes)
                polled = replace(head, records=[r.refused(refusal) for r in head.records])
            if self._cap < self._batch:
                self._cap = min(self._batch, self._cap * 2)
            for reason in polled.skipped:
                log.warning("skipped a record the instance sent: %s", reason)
                self._audit.record("record.skipped", {"reason": reason[:300]})
            # Never more than asked for, never a job already running: the concurrency cap holds.
            return [r for r in polled.records if r.sys_id not in running][:want]

    def full_batch(self, want: int, got: int) -> bool:
        """Whether ``got`` records fill what was asked (then more is probably waiting)."""
        return got >= min(want, self._cap)
