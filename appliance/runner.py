"""The appliance's main loop: poll, claim, run, respond; resume at start; drain on shutdown.

One asyncio loop drives everything. The loop never listens on a socket: every connection it makes
is outbound, to the instance or to an allowlisted target.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field

from appliance.dispatch import Dispatcher, Outcome
from appliance.errors import InstanceAuthError, InstanceError
from appliance.payload import build_results
from appliance.probes.base import AuditSink
from appliance.queue.backoff import Backoff
from appliance.queue.client import EccClient, InstanceBusy
from appliance.queue.records import OutputRecord

log = logging.getLogger(__name__)

SHUTDOWN_ERROR = "the appliance shut down before this probe finished; the instance may send it again"
AUTH_RETRY_FLOOR_S = 60.0  # 401/403: an operator has to act; retry slowly meanwhile


@dataclass(frozen=True)
class RunnerSettings:
    poll_interval_s: float
    concurrency: int
    batch: int
    shutdown_deadline_s: float
    backoff_base_s: float
    backoff_cap_s: float
    retry_after_cap_s: float
    version: str
    host_name: str


@dataclass
class RunnerStats:
    started: float = field(default_factory=time.monotonic)
    claimed: int = 0
    answered: int = 0
    errors: int = 0
    undelivered: int = 0


class Runner:
    def __init__(
        self, *, client: EccClient, dispatcher: Dispatcher, audit: AuditSink, settings: RunnerSettings
    ) -> None:
        self._client = client
        self._dispatcher = dispatcher
        self._audit = audit
        self._settings = settings
        self._tasks: set[asyncio.Task[None]] = set()
        self._slot_freed = asyncio.Event()
        self._abort = asyncio.Event()  # shutdown deadline passed: fail what is still running
        self._abandon = asyncio.Event()  # delivery deadline passed: stop retrying posts
        self.stats = RunnerStats()

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set, then drain within the shutdown deadline."""
        await self._set_status("Up")
        try:
            await self._resume(stop)
            await self._poll_loop(stop)
        finally:
            await self._drain()
            await self._set_status("Down")

    async def _poll_loop(self, stop: asyncio.Event) -> None:
        backoff = self._backoff()
        while not stop.is_set():
            free = self._settings.concurrency - len(self._tasks)
            if free <= 0:
                self._slot_freed.clear()
                await _wait_any(stop, self._slot_freed, timeout=None)
                continue
            want = min(free, self._settings.batch)
            try:
                records = await self._client.poll(want)
                if records:
                    await self._client.claim(records)
                backoff.reset()
            except InstanceBusy as e:
                await self._pause(stop, backoff.next_delay(e.retry_after_s), e)
                continue
            except InstanceAuthError as e:
                await self._pause(stop, max(AUTH_RETRY_FLOOR_S, backoff.next_delay()), e)
                continue
            except InstanceError as e:
                await self._pause(stop, backoff.next_delay(), e)
                continue
            for record in records:
                self._start(record)
            if len(records) < want:  # a full batch means more is waiting: poll again at once
                await _wait_any(stop, timeout=self._settings.poll_interval_s)

    async def _resume(self, stop: asyncio.Event) -> None:
        """Outputs this agent claimed before a crash: answer those the instance has no answer for."""
        backoff = self._backoff()
        while not stop.is_set():
            try:
                records = await self._client.poll(self._settings.batch, state="processing")
                pending = [r for r in records if not await self._client.has_response(r.sys_id)]
                break
            except InstanceError as e:
                await self._pause(stop, backoff.next_delay(getattr(e, "retry_after_s", None)), e)
        else:
            return
        for record in pending:
            self._audit.record("job.resumed", {"job": record.sys_id, "topic": record.topic[:80]})
            self._start(record, claimed=True)

    def _start(self, record: OutputRecord, claimed: bool = False) -> None:
        self.stats.claimed += 1
        if not claimed:
            self._audit.record(
                "job.claimed",
                {"job": record.sys_id, "topic": record.topic[:80], "target": record.source[:255]},
            )
        task = asyncio.create_task(self._process(record), name=f"job-{record.sys_id}")
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._slot_freed.set()
        if not task.cancelled() and task.exception() is not None:
            log.error("job task ended with %s", type(task.exception()).__name__)

    async def _process(self, record: OutputRecord) -> None:
        inner = asyncio.create_task(self._dispatcher.handle(record))
        aborted = asyncio.create_task(self._abort.wait())
        await asyncio.wait({inner, aborted}, return_when=asyncio.FIRST_COMPLETED)
        aborted.cancel()
        if inner.done():
            outcome = inner.result()
        else:
            inner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await inner
            payload = build_results(
                result=None, echo_record=record.echo(), parameters=(), probe_time_ms=0, error=SHUTDOWN_ERROR
            )
            outcome = Outcome(payload, SHUTDOWN_ERROR, 0)
        await self._deliver(record, outcome)

    async def _deliver(self, record: OutputRecord, outcome: Outcome) -> None:
        backoff = self._backoff()
        while True:
            try:
                input_id = await self._client.respond(record, outcome.payload, outcome.error)
            except InstanceError as e:
                if self._abandon.is_set():
                    self.stats.undelivered += 1
                    log.error("result for %s not delivered before shutdown: %s", record.sys_id, e)
                    self._audit.record("result.undelivered", {"job": record.sys_id, "reason": str(e)[:200]})
                    return
                await _wait_any(self._abandon, timeout=backoff.next_delay(getattr(e, "retry_after_s", None)))
                continue
            self.stats.answered += 1
            if outcome.error:
                self.stats.errors += 1
            self._audit.record(
                "result.posted",
                {"job": record.sys_id, "input": input_id, "result_code": 1 if outcome.error else 0},
            )
            return

    async def _drain(self) -> None:
        if self._tasks:
            log.info("shutting down: waiting for %d running job(s)", len(self._tasks))
            _, pending = await asyncio.wait(set(self._tasks), timeout=self._settings.shutdown_deadline_s)
            if pending:
                self._abort.set()
                _, pending = await asyncio.wait(pending, timeout=self._settings.shutdown_deadline_s)
            if pending:
                self._abandon.set()
                _, pending = await asyncio.wait(pending, timeout=5)
            for task in pending:
                task.cancel()
        await self._dispatcher.aclose()

    async def _set_status(self, status: str) -> None:
        try:
            ok = await self._client.set_status(status, self._settings.version, self._settings.host_name)
        except InstanceError as e:
            log.warning("could not set this MID's ecc_agent status to %s: %s", status, e)
            return
        if not ok:
            log.warning(
                "the instance has no ecc_agent record for this MID or refuses updates; status not set"
            )

    async def _pause(self, stop: asyncio.Event, delay: float, error: Exception) -> None:
        log.warning("%s; next try in %.1f s", error, delay)
        await _wait_any(stop, timeout=delay)

    def _backoff(self) -> Backoff:
        s = self._settings
        return Backoff(s.backoff_base_s, s.backoff_cap_s, s.retry_after_cap_s)

    def status(self) -> dict[str, str]:
        """What a HeartbeatProbe reports."""
        return {
            "version": self._settings.version,
            "uptime_s": str(int(time.monotonic() - self.stats.started)),
            "jobs_in_flight": str(len(self._tasks)),
            "jobs_answered": str(self.stats.answered),
            "rss_kb": str(_rss_kb()),
        }


async def _wait_any(*events: asyncio.Event, timeout: float | None) -> None:
    waiters = [asyncio.create_task(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()


def _rss_kb() -> int:
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0
