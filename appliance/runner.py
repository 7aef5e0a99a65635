"""The appliance's main loop: recover, poll, claim, run, keep, send; drain on shutdown.

One asyncio loop drives everything. It never listens on a socket: every connection is outbound, to
the instance or to an allowlisted target. Delivery is at-least-once on the wire and exactly-once as
the instance sees it: a result sits in the durable outbox until the instance confirmed it, and a
re-send after any doubt first asks the instance whether an answer is already there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

from appliance.aio import relay, wait_any
from appliance.dispatch import Dispatcher
from appliance.errors import InstanceAuthError, InstanceError, RunnerHaltedError, describe, is_fatal
from appliance.gate import JobGate
from appliance.health import Health
from appliance.healthreport import HealthReport
from appliance.interfaces import AuditSink, Outcome
from appliance.limits import MAX_INSTANCE_RESPONSE_BYTES, MAX_JOB_STARTS
from appliance.livestatus import LiveStatus
from appliance.memtrim import IdleTrim
from appliance.queue.answers import InstanceBusyError
from appliance.queue.backoff import Backoff
from appliance.queue.client import EccClient
from appliance.queue.delivery import Delivery
from appliance.queue.durable import Journal, Outbox, OutboxCloser
from appliance.queue.fetch import Fetcher
from appliance.queue.midissues import MidIssues
from appliance.queue.midrecord import MidRecord
from appliance.queue.records import OutputRecord
from appliance.results import (
    HELD_ERROR,
    INTERNAL_ERROR,
    INTERRUPTED_ERROR,
    RESTARTED_ERROR,
    SHUTDOWN_ERROR,
    error_outcome,
)

log = logging.getLogger(__name__)

AUTH_RETRY_FLOOR_S = 60.0  # 401/403: an operator has to act; retry slowly meanwhile
CONFIG_TOPIC = "midbox.config"  # a signed config delivered through the instance (appliance.config_push)


@dataclass(frozen=True)
class RunnerSettings:
    poll_interval_s: float
    concurrency: int
    batch: int
    shutdown_deadline_s: float
    backoff_base_s: float
    backoff_cap_s: float
    retry_after_cap_s: float
    version: str  # reported in HeartbeatProbe answers; never written to ecc_agent
    host_name: str
    ip_address: str = ""
    answer_bytes: int = MAX_INSTANCE_RESPONSE_BYTES  # the cap on one instance answer (for messages)


class Runner:
    def __init__(
        self,
        *,
        client: EccClient,
        dispatcher: Dispatcher,
        audit: AuditSink,
        settings: RunnerSettings,
        journal: Journal,
        outbox: Outbox,
        status: LiveStatus | None = None,
        after_poll: Callable[[Health], None] | None = None,
        gate: JobGate | None = None,
        trim: IdleTrim | None = None,
    ) -> None:
        self._client = client
        self._trim = trim  # gives freed heap back when idle (appliance.memtrim); None in unit tests
        self.status = status or LiveStatus(
            version=settings.version, health=Health(version=settings.version, binary_sha256=""), outbox=outbox
        )
        self._hold = self.status.hold  # why no new work may be claimed now (appliance.validity), or None
        self._dispatcher = dispatcher
        self._audit = audit
        self._settings = settings
        self._journal = journal
        self._outbox = outbox
        self._closer = OutboxCloser(journal, outbox)  # sent results' outbox entries, after the journal's sync
        self._gate = gate  # quarantine and replay protection (None: neither, as in unit tests)
        self._tasks: set[asyncio.Task[None]] = set()
        self._slot_freed = asyncio.Event()
        self._abort = asyncio.Event()  # shutdown deadline passed: fail what is still running
        self._halt = asyncio.Event()  # stop requested, or something we cannot work without failed
        self._fatal: BaseException | None = None
        self._mid_record = MidRecord(client, host_name=settings.host_name, ip_address=settings.ip_address)
        self._running: set[str] = set()  # sys_ids of jobs started and not yet kept in the outbox
        self._fetcher = Fetcher(client, audit, batch=settings.batch, answer_bytes=settings.answer_bytes)
        self.stats = self.status.stats
        self._delivery = Delivery(
            client=client,
            close=self._closer.close,
            audit=audit,
            stats=self.stats,
            backoff=self._backoff,
            on_sent=self._slot_freed.set,
            on_fatal=self._fail,
        )
        self.health = self.status.health
        self.health.know_topics(dispatcher.topics)
        self._report = HealthReport(self.health, MidIssues(client), journal, self._closer.unsent, after_poll)

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set, then drain within the shutdown deadline."""
        self._delivery.start()
        relaying = asyncio.create_task(relay(stop, self._halt))
        await self._mid_record.announce("Up")
        try:
            await self._recover(self._halt)
            await self._poll_loop(self._halt)
        except Exception as e:
            self._fail(e)
        finally:
            relaying.cancel()
            if self.health.state != "reloading":
                self.health.state = "draining"
            self._report.publish()
            await self._drain()
            await self._mid_record.announce("Down")
        if self._fatal is not None:
            raise RunnerHaltedError(
                f"stopped claiming work: {describe(self._fatal)}; every result so far is kept in the "
                "journal and the outbox and is delivered at the next start; fix the cause and start again"
            ) from self._fatal

    def _fail(self, error: BaseException) -> None:
        """Fail closed: a job whose audit entry or journal write failed must not be followed by more."""
        if self._fatal is None:
            self._fatal = error
            log.error("stopping: %s", describe(error))
        self._halt.set()

    # Recovery at start-up, in order: results owed, jobs interrupted, claims the journal missed.
    async def _recover(self, stop: asyncio.Event) -> None:
        for pending in self._outbox.entries():
            self.stats.recovered += 1
            self._queue_send(pending.record, pending.outcome, check_first=True)
        for claimed_entry in list(self._journal.entries()):
            record = claimed_entry.record
            if record.sys_id in self._outbox:
                # Killed between keeping the result and closing the journal: the result is owed
                # already (sent above); running the job again would answer it twice.
                self._journal.remove(record.sys_id)
                continue
            self.stats.recovered += 1
            self._resume(record, claimed_entry.starts)
        backoff = self._backoff()
        while not stop.is_set():
            try:
                claimed = await self._fetch(self._settings.batch, state="processing")
                orphans = [
                    r
                    for r in claimed
                    if r.sys_id not in self._journal
                    and r.sys_id not in self._outbox
                    and r.sys_id not in self._running
                    and not await self._client.has_response(r.sys_id)
                ]
                break
            except InstanceError as e:
                self._report.polled(e)
                await self._pause(stop, backoff.next_delay(e.retry_after_s), e)
        else:
            return
        for record in orphans:
            self.stats.recovered += 1
            self._resume(record)

    def _resume(self, record: OutputRecord, starts: int = 0) -> None:
        """A job claimed before this start and not answered: ``starts`` is how often it was started."""
        self._audit.record("job.resumed", {"job": record.sys_id, "topic": record.topic[:80]})
        held = self._hold()
        if held and record.topic not in ("HeartbeatProbe", CONFIG_TOPIC):
            self._keep(record, error_outcome(record, HELD_ERROR.format(reason=held)))
        elif starts >= MAX_JOB_STARTS:
            self._keep(record, error_outcome(record, RESTARTED_ERROR.format(starts=starts)))
        elif self._dispatcher.rerun_safe(record):
            self._start(record, journaled=starts > 0, starts=starts + 1)
        else:
            self._keep(record, error_outcome(record, INTERRUPTED_ERROR.format(topic=record.topic[:80])))

    async def _fetch(
        self, want: int, *, state: str = "ready", topic: str | tuple[str, ...] | None = None
    ) -> list[OutputRecord]:
        return await self._fetcher.fetch(want, state=state, topic=topic, running=self._running)

    async def _poll_loop(self, stop: asyncio.Event) -> None:
        backoff = self._backoff()
        full_reported = False
        while not stop.is_set():
            free = self._settings.concurrency - len(self._tasks)
            if self._outbox.full() and self._closer.waiting():
                # Sent results waiting for a journal sync count until it comes; while full, no new
                # job's journal entry brings one.
                await asyncio.to_thread(self._closer.settle)
            if self._outbox.full():
                if not full_reported:
                    full_reported = True
                    log.warning(
                        "outbox full (%d results unsent): not claiming new work", self._outbox.count()
                    )
                    self._audit.record("outbox.full", {"count": self._outbox.count()})
                self._report.publish()
                await wait_any(stop, self._slot_freed, timeout=self._settings.poll_interval_s)
                self._slot_freed.clear()
                continue
            if full_reported:
                full_reported = False
                self._audit.record("outbox.resumed", {"count": self._outbox.count()})
            # Quarantined: only heartbeats are polled (as when saturated); results still drain.
            quarantined = self._gate is not None and self._gate.quarantined()
            want = 0 if quarantined else min(max(free, 0), self._settings.batch)
            if self._hold():
                want = 0  # expired: claim nothing but the monitor's heartbeats, which say why
            try:
                if want:
                    records = await self._fetch(want)
                else:
                    # Saturated: still answer the instance's monitor, so a busy MID is not marked Down;
                    # held (expired): also take a signed config, which is what ends the hold.
                    records = await self._fetch(1, topic=self._lifelines(quarantined))
                if stop.is_set():
                    break  # fetched while stopping, not claimed: they stay ready for whoever polls next
                if records:
                    await self._client.claim(records)
                backoff.reset()
            except InstanceBusyError as e:
                self._report.polled(e)
                await self._pause(stop, backoff.next_delay(e.retry_after_s), e)
                continue
            except InstanceAuthError as e:
                self._report.polled(e)
                await self._pause(stop, max(AUTH_RETRY_FLOOR_S, backoff.next_delay()), e)
                continue
            except InstanceError as e:
                self._report.polled(e)
                await self._pause(stop, backoff.next_delay(), e)
                continue
            if not stop.is_set():
                # A runner being replaced (a reload) leaves the health to the next one: that one's first
                # poll says the new config runs (READY=1), not a poll of the old one still in flight.
                self._report.polled(None)
            if not records and not self._tasks and self._closer.waiting():
                # At rest no journal write will come to carry their sync. Checked first: an idle poll
                # with nothing waiting (nearly all of them) costs no thread hop.
                await asyncio.to_thread(self._closer.settle)
            if not records and not self._tasks and self._trim is not None:
                self._trim.idle()
            for record in records:
                # A record that cannot run anyway keeps its own reason (answered by the dispatcher).
                gated = self._gate is not None and not record.refusal
                refusal = self._gate.refusal(record) if gated and self._gate is not None else None
                if refusal is None:
                    self._start(record)
                else:  # replayed or stale: answered with the reason, never run
                    outcome = error_outcome(record, refusal)
                    await asyncio.to_thread(self._make_durable, record, outcome)
                    self._queue_send(record, outcome, check_first=False)
            if not want or not self._fetcher.full_batch(want, len(records)):  # a full batch: more is waiting
                self._slot_freed.clear()
                await wait_any(
                    stop, *([self._slot_freed] if not want else []), timeout=self._settings.poll_interval_s
                )

    def _lifelines(self, quarantined: bool) -> str | tuple[str, ...]:
        """What is polled when no new work is: heartbeats, and configs unless an operator quarantined."""
        if quarantined or CONFIG_TOPIC not in self._dispatcher.topics:
            return "HeartbeatProbe"
        return ("HeartbeatProbe", CONFIG_TOPIC)

    def _start(self, record: OutputRecord, journaled: bool = False, starts: int = 1) -> None:
        if self._trim is not None:
            self._trim.worked()
        self.stats.claimed += 1
        self.health.count(record.topic, "claimed")
        self._running.add(record.sys_id)
        if not journaled:
            self._audit.record(
                "job.claimed",
                {"job": record.sys_id, "topic": record.topic[:80], "target": record.source[:255]},
            )
        task = asyncio.create_task(self._process(record, starts), name=f"job-{record.sys_id}")
        self._tasks.add(task)
        self.status.in_flight = len(self._tasks)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self.status.in_flight = len(self._tasks)
        self._slot_freed.set()
        if self._trim is not None and not self._tasks:
            self._trim.idle()  # the last job's result is durable and queued: its buffers are garbage
        if not task.cancelled() and (error := task.exception()) is not None:
            self._fail(error)

    async def _process(self, record: OutputRecord, starts: int) -> None:
        try:
            # Before the probe starts: after a crash, this is how we know the job was ours, and how
            # often it was started. The disk work (an append and a data sync shared with concurrent
            # jobs) runs in a thread, not on the event loop.
            await asyncio.to_thread(self._journaled, record, starts)
            inner = asyncio.create_task(self._dispatch(record))
            aborted = asyncio.create_task(self._abort.wait())
            await asyncio.wait({inner, aborted}, return_when=asyncio.FIRST_COMPLETED)
            aborted.cancel()
            if inner.done():
                try:
                    outcome = inner.result()
                except Exception as e:
                    if is_fatal(e):
                        raise
                    # One job's bug is that job's error result; it never stops the others.
                    log.error("job %s: unexpected %s while handling it", record.sys_id, type(e).__name__)
                    outcome = error_outcome(record, INTERNAL_ERROR.format(kind=type(e).__name__))
            else:
                inner.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await inner
                outcome = error_outcome(record, SHUTDOWN_ERROR)
            await asyncio.to_thread(self._make_durable, record, outcome)
            self.health.finished(record.topic, outcome.kind, outcome.probe, outcome.duration_ms)
        finally:
            self._running.discard(record.sys_id)
        self._queue_send(record, outcome, check_first=False)

    async def _dispatch(self, record: OutputRecord) -> Outcome:
        if self._gate is not None:
            refusal = self._gate.quarantine_refusal(record)
            if refusal is not None:
                return error_outcome(record, refusal)
            await asyncio.to_thread(self._gate.started, record)  # in the run ledger before it runs
        return await self._dispatcher.handle(record)

    def _make_durable(self, record: OutputRecord, outcome: Outcome) -> None:
        """The result is in the outbox (fsync'd) before the journal entry goes."""
        self._outbox.add(record, outcome)
        self._journal.remove(record.sys_id, durable=False)  # durable before the outbox entry goes

    def _journaled(self, record: OutputRecord, starts: int) -> None:
        self._journal.add(record, starts)
        self._closer.release()  # that sync made earlier journal removals durable too

    def _keep(self, record: OutputRecord, outcome: Outcome) -> None:
        """Make the result durable, close the journal entry, and hand it to the senders."""
        self._make_durable(record, outcome)
        self.health.finished(record.topic, outcome.kind, outcome.probe, outcome.duration_ms)
        self._queue_send(record, outcome, check_first=False)

    def _queue_send(self, record: OutputRecord, outcome: Outcome, *, check_first: bool) -> None:
        self._delivery.send(record, outcome, check_first=check_first)

    async def _drain(self) -> None:
        deadline = self._settings.shutdown_deadline_s
        if self._tasks:
            log.info("shutting down: waiting for %d running job(s)", len(self._tasks))
            _, pending = await asyncio.wait(set(self._tasks), timeout=deadline)
            if pending:
                self._abort.set()
                await asyncio.wait(pending, timeout=deadline)
        await self._delivery.drain(deadline)
        await asyncio.to_thread(self._closer.settle)
        await self._report.finish()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._dispatcher.aclose()

    async def _pause(self, stop: asyncio.Event, delay: float, error: Exception) -> None:
        log.warning("%s; next try in %.1f s", error, delay)
        await wait_any(stop, timeout=delay)

    def _backoff(self) -> Backoff:
        s = self._settings
        return Backoff(s.backoff_base_s, s.backoff_cap_s, s.retry_after_cap_s)
