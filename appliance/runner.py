"""The appliance's main loop: recover, poll, claim, run, keep, send; drain on shutdown.

One asyncio loop drives everything. It never listens on a socket: every connection is outbound, to
the instance or to an allowlisted target. Delivery is at-least-once on the wire and exactly-once as
the instance sees it: a result sits in the durable outbox until the instance confirmed it, and a
re-send after any doubt first asks the instance whether an answer is already there.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from appliance.dispatch import Dispatcher, Outcome, rerun_safe
from appliance.durable import Journal, Outbox
from appliance.errors import InstanceAuthError, InstanceError, RunnerHalted
from appliance.gate import JobGate
from appliance.health import Health
from appliance.limits import MAX_INSTANCE_RESPONSE_BYTES, MAX_JOB_STARTS
from appliance.payload import build_results
from appliance.probes.base import AuditSink
from appliance.queue.backoff import Backoff
from appliance.queue.client import AnswerTooLarge, EccClient, InstanceBusy
from appliance.queue.midissues import MidIssues
from appliance.queue.midrecord import MidRecord
from appliance.queue.records import HEAD_FIELDS, ID_FIELDS, OutputRecord
from hardening.audit.errors import AuditValueError
from hardening.errors import HardeningError

log = logging.getLogger(__name__)

SHUTDOWN_ERROR = "the appliance shut down before this probe finished; the instance may send it again"
INTERRUPTED_ERROR = (
    "the appliance stopped while this probe ran; it is not run again because {topic} may have side effects"
)
RESTARTED_ERROR = (
    "this job was started {starts} times and each time the appliance stopped before it finished; it is "
    "not run again, since it may be what stops the appliance: check the appliance log, then re-send it"
)
HELD_ERROR = "not run: {reason}"
TOO_LARGE_ERROR = (
    "the output record is larger than the {cap} bytes the appliance reads in one answer; it is not run: "
    "make its payload smaller"
)
AUTH_RETRY_FLOOR_S = 60.0  # 401/403: an operator has to act; retry slowly meanwhile
SENDERS = 8
ISSUE_SYNC_S = 60.0  # ecc_agent_issue records and last_refreshed, at most this often unless problems change


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


@dataclass
class RunnerStats:
    started: float = field(default_factory=time.monotonic)
    claimed: int = 0
    answered: int = 0
    errors: int = 0
    recovered: int = 0
    duplicates_avoided: int = 0
    undelivered: int = 0


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
        hold: Callable[[], str | None] = lambda: None,
        health: Health | None = None,
        after_poll: Callable[[Health], None] | None = None,
        gate: JobGate | None = None,
    ) -> None:
        self._client = client
        self._hold = hold  # why no new work may be claimed now (appliance.validity), or None
        self._dispatcher = dispatcher
        self._audit = audit
        self._settings = settings
        self._journal = journal
        self._outbox = outbox
        self._gate = gate  # quarantine and replay protection (None: neither, as in unit tests)
        self._tasks: set[asyncio.Task[None]] = set()
        self._sending: asyncio.Queue[tuple[OutputRecord, Outcome, bool]] = asyncio.Queue()
        self._unsent = 0
        self._slot_freed = asyncio.Event()
        self._abort = asyncio.Event()  # shutdown deadline passed: fail what is still running
        self._abandon = asyncio.Event()  # delivery deadline passed: leave the rest in the outbox
        self._halt = asyncio.Event()  # stop requested, or something we cannot work without failed
        self._fatal: BaseException | None = None
        self._mid_record = MidRecord(client, host_name=settings.host_name, ip_address=settings.ip_address)
        self._running: set[str] = set()  # sys_ids of jobs started and not yet kept in the outbox
        self._poll_cap = max(1, settings.batch)  # halved on each answer too large, regrown on success
        self.stats = RunnerStats()
        self.health = health or Health(version=settings.version, binary_sha256="")
        self.health.know_topics(dispatcher.topics)
        self._after_poll = after_poll
        self._publish_failed = False
        self._issues = MidIssues(client)
        self._issues_task: asyncio.Task[None] | None = None
        self._issues_at = -ISSUE_SYNC_S  # monotonic time of the last sync; the first poll syncs
        self._issues_seen: frozenset[str] = frozenset()

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set, then drain within the shutdown deadline."""
        senders = [asyncio.create_task(self._sender()) for _ in range(SENDERS)]
        relay = asyncio.create_task(_relay(stop, self._halt))
        await self._mid_record.announce("Up")
        try:
            await self._recover(self._halt)
            await self._poll_loop(self._halt)
        except Exception as e:
            self._fail(e)
        finally:
            relay.cancel()
            if self.health.state != "reloading":
                self.health.state = "draining"
            self._publish()
            await self._drain(senders)
            await self._mid_record.announce("Down")
        if self._fatal is not None:
            raise RunnerHalted(
                f"stopped claiming work: {_describe(self._fatal)}; every result so far is kept in the "
                "journal and the outbox and is delivered at the next start; fix the cause and start again"
            ) from self._fatal

    def _fail(self, error: BaseException) -> None:
        """Fail closed: a job whose audit entry or journal write failed must not be followed by more."""
        if self._fatal is None:
            self._fatal = error
            log.error("stopping: %s", _describe(error))
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
                self._polled(e)
                await self._pause(stop, backoff.next_delay(getattr(e, "retry_after_s", None)), e)
        else:
            return
        for record in orphans:
            self.stats.recovered += 1
            self._resume(record)

    def _resume(self, record: OutputRecord, starts: int = 0) -> None:
        """A job claimed before this start and not answered: ``starts`` is how often it was started."""
        self._audit.record("job.resumed", {"job": record.sys_id, "topic": record.topic[:80]})
        held = self._hold()
        if held and record.topic != "HeartbeatProbe":
            self._keep(record, _error_outcome(record, HELD_ERROR.format(reason=held)))
        elif starts >= MAX_JOB_STARTS:
            self._keep(record, _error_outcome(record, RESTARTED_ERROR.format(starts=starts)))
        elif rerun_safe(record):
            self._start(record, journaled=starts > 0, starts=starts + 1)
        else:
            self._keep(record, _error_outcome(record, INTERRUPTED_ERROR.format(topic=record.topic[:80])))

    async def _fetch(
        self, want: int, *, state: str = "ready", topic: str | None = None
    ) -> list[OutputRecord]:
        """Poll for up to ``want`` records. An answer too large for the cap is asked for again with
        half the batch, down to one record; a single record too large is read by its head fields only
        and answered with an error, so it cannot block the queue."""
        while True:
            limit = max(1, min(want, self._poll_cap))
            try:
                polled = await self._client.poll(limit, state=state, topic=topic)
            except AnswerTooLarge as e:
                if limit > 1:
                    self._poll_cap = max(1, limit // 2)
                    log.warning("%s; asking for %d record(s) at a time", e, self._poll_cap)
                    continue
                try:
                    head = await self._client.poll(1, state=state, topic=topic, fields=HEAD_FIELDS)
                except AnswerTooLarge:  # even its name or source is huge: answer by sys_id alone
                    head = await self._client.poll(1, state=state, topic=topic, fields=ID_FIELDS)
                refusal = TOO_LARGE_ERROR.format(cap=self._settings.answer_bytes)
                polled = replace(head, records=[r.refused(refusal) for r in head.records])
            if self._poll_cap < self._settings.batch:
                self._poll_cap = min(self._settings.batch, self._poll_cap * 2)
            for reason in polled.skipped:
                log.warning("skipped a record the instance sent: %s", reason)
                self._audit.record("record.skipped", {"reason": reason[:300]})
            # Never more than asked for, never a job already running: the concurrency cap holds.
            return [r for r in polled.records if r.sys_id not in self._running][:want]

    async def _poll_loop(self, stop: asyncio.Event) -> None:
        backoff = self._backoff()
        full_reported = False
        while not stop.is_set():
            free = self._settings.concurrency - len(self._tasks)
            if self._outbox.full():
                if not full_reported:
                    full_reported = True
                    log.warning(
                        "outbox full (%d results unsent): not claiming new work", self._outbox.count()
                    )
                    self._audit.record("outbox.full", {"count": self._outbox.count()})
                self._publish()
                await _wait_any(stop, self._slot_freed, timeout=self._settings.poll_interval_s)
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
                    # Saturated: still answer the instance's monitor, so a busy MID is not marked Down.
                    records = await self._fetch(1, topic="HeartbeatProbe")
                if records:
                    await self._client.claim(records)
                backoff.reset()
            except InstanceBusy as e:
                self._polled(e)
                await self._pause(stop, backoff.next_delay(e.retry_after_s), e)
                continue
            except InstanceAuthError as e:
                self._polled(e)
                await self._pause(stop, max(AUTH_RETRY_FLOOR_S, backoff.next_delay()), e)
                continue
            except InstanceError as e:
                self._polled(e)
                await self._pause(stop, backoff.next_delay(), e)
                continue
            self._polled(None)
            for record in records:
                # A record that cannot run anyway keeps its own reason (answered by the dispatcher).
                gated = self._gate is not None and not record.refusal
                refusal = self._gate.refusal(record) if gated and self._gate is not None else None
                if refusal is None:
                    self._start(record)
                else:  # replayed or stale: answered with the reason, never run
                    outcome = _error_outcome(record, refusal)
                    await asyncio.to_thread(self._make_durable, record, outcome)
                    self._queue_send(record, outcome, check_first=False)
            if not want or len(records) < min(want, self._poll_cap):  # a full batch: more is waiting
                self._slot_freed.clear()
                await _wait_any(
                    stop, *([self._slot_freed] if not want else []), timeout=self._settings.poll_interval_s
                )

    def _polled(self, error: InstanceError | None) -> None:
        if error is None:
            self.health.poll_ok()
            self._sync_issues()
        else:
            self.health.poll_failed(str(error))
        self._publish()

    def _sync_issues(self) -> None:
        """Issue records and last_refreshed on the instance: when the problems change, else every
        ISSUE_SYNC_S; in the background, so the poll loop never waits for it."""
        problems = self.health.problems()
        keys = frozenset(p.key for p in problems)
        due = time.monotonic() - self._issues_at >= ISSUE_SYNC_S or keys != self._issues_seen
        if not due or (self._issues_task is not None and not self._issues_task.done()):
            return
        self._issues_at, self._issues_seen = time.monotonic(), keys
        self._issues_task = asyncio.create_task(self._issues.sync(problems), name="issues")

    def _publish(self) -> None:
        """Health out after every poll; a status file that cannot be written never stops the work."""
        self.health.outbox_depth = self._outbox.count()
        self.health.journal_depth = self._journal.count()
        if self._after_poll is None:
            return
        try:
            self._after_poll(self.health)
            self._publish_failed = False
        except OSError as e:
            if not self._publish_failed:
                log.warning("could not write the status file: %s; check the state dir's space", e.strerror)
            self._publish_failed = True

    def _start(self, record: OutputRecord, journaled: bool = False, starts: int = 1) -> None:
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
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._slot_freed.set()
        if not task.cancelled() and (error := task.exception()) is not None:
            self._fail(error)

    async def _process(self, record: OutputRecord, starts: int) -> None:
        try:
            # Before the probe starts: after a crash, this is how we know the job was ours, and how
            # often it was started. The disk work (write, fsync, rename, fsync the dir) runs in a
            # thread, not on the event loop.
            await asyncio.to_thread(self._journal.add, record, starts)
            inner = asyncio.create_task(self._dispatch(record))
            aborted = asyncio.create_task(self._abort.wait())
            await asyncio.wait({inner, aborted}, return_when=asyncio.FIRST_COMPLETED)
            aborted.cancel()
            if inner.done():
                try:
                    outcome = inner.result()
                except Exception as e:
                    if _fatal(e):
                        raise
                    # One job's bug is that job's error result; it never stops the others.
                    log.error("job %s: unexpected %s while handling it", record.sys_id, type(e).__name__)
                    outcome = _error_outcome(
                        record,
                        f"internal error while handling this job ({type(e).__name__}); see the appliance log",
                    )
            else:
                inner.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await inner
                outcome = _error_outcome(record, SHUTDOWN_ERROR)
            await asyncio.to_thread(self._make_durable, record, outcome)
            self.health.finished(record.topic, outcome.kind, outcome.probe, outcome.duration_ms)
        finally:
            self._running.discard(record.sys_id)
        self._queue_send(record, outcome, check_first=False)

    async def _dispatch(self, record: OutputRecord) -> Outcome:
        if self._gate is not None:
            refusal = self._gate.quarantine_refusal(record)
            if refusal is not None:
                return _error_outcome(record, refusal)
            await asyncio.to_thread(self._gate.started, record)  # in the run ledger before it runs
        return await self._dispatcher.handle(record)

    def _make_durable(self, record: OutputRecord, outcome: Outcome) -> None:
        """The result is in the outbox (fsync'd) before the journal entry goes."""
        self._outbox.add(record, outcome)
        self._journal.remove(record.sys_id, durable=False)  # durable before the outbox entry goes

    def _close_outbox_entry(self, sys_id: str) -> None:
        """The instance has the result: its outbox entry goes, after its journal entry's removal is durable.

        Otherwise a power loss could bring the journal entry back without the result, and the job
        would run again. Under load a later journal write has usually made it durable already. The
        outbox removal itself may be lost: that result is sent again only after asking the instance.
        """
        self._journal.settle()
        self._outbox.remove(sys_id, durable=False)

    def _keep(self, record: OutputRecord, outcome: Outcome) -> None:
        """Make the result durable, close the journal entry, and hand it to the senders."""
        self._make_durable(record, outcome)
        self.health.finished(record.topic, outcome.kind, outcome.probe, outcome.duration_ms)
        self._queue_send(record, outcome, check_first=False)

    def _queue_send(self, record: OutputRecord, outcome: Outcome, *, check_first: bool) -> None:
        self._unsent += 1
        self._sending.put_nowait((record, outcome, check_first))

    async def _sender(self) -> None:
        while True:
            record, outcome, check_first = await self._sending.get()
            try:
                await self._deliver(record, outcome, check_first)
            except Exception as e:
                if _fatal(e):
                    self._fail(e)
                    return
                # Kept in the outbox (tried again at the next start); the other results go on.
                self.stats.undelivered += 1
                log.error("result for %s not sent: unexpected %s", record.sys_id, type(e).__name__)
            finally:
                self._unsent -= 1
                self._sending.task_done()
                self._slot_freed.set()

    async def _deliver(self, record: OutputRecord, outcome: Outcome, ambiguous: bool) -> None:
        backoff = self._backoff()
        while True:
            try:
                if ambiguous and await self._client.has_response(record.sys_id):
                    # An earlier try (or another cluster member) got through: sending again would duplicate.
                    self.stats.duplicates_avoided += 1
                    await asyncio.to_thread(self._close_outbox_entry, record.sys_id)
                    self._audit.record("result.already_posted", {"job": record.sys_id})
                    return
                input_id = await self._client.respond(record, outcome.payload, outcome.error)
            except InstanceError as e:
                # 429/503/401/403 were refused before any insert; anything else may have been applied.
                ambiguous = ambiguous or not isinstance(e, (InstanceBusy, InstanceAuthError))
                if self._abandon.is_set():
                    self.stats.undelivered += 1
                    log.warning(
                        "result for %s stays in the outbox until the next start: %s", record.sys_id, e
                    )
                    return
                await _wait_any(self._abandon, timeout=backoff.next_delay(getattr(e, "retry_after_s", None)))
                continue
            await asyncio.to_thread(self._close_outbox_entry, record.sys_id)
            self.stats.answered += 1
            if outcome.error:
                self.stats.errors += 1
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

    async def _drain(self, senders: list[asyncio.Task[None]]) -> None:
        deadline = self._settings.shutdown_deadline_s
        if self._tasks:
            log.info("shutting down: waiting for %d running job(s)", len(self._tasks))
            _, pending = await asyncio.wait(set(self._tasks), timeout=deadline)
            if pending:
                self._abort.set()
                await asyncio.wait(pending, timeout=deadline)
        if self._unsent:
            waiter = asyncio.create_task(self._sending.join())
            await asyncio.wait({waiter}, timeout=deadline)
            if not waiter.done():
                self._abandon.set()
                await asyncio.wait({waiter}, timeout=5)
            waiter.cancel()
        if self._issues_task is not None:
            await asyncio.wait({self._issues_task}, timeout=5)
        for task in [*senders, *self._tasks, *([self._issues_task] if self._issues_task else [])]:
            task.cancel()
        await asyncio.gather(*senders, *self._tasks, return_exceptions=True)
        await self._dispatcher.aclose()

    async def _pause(self, stop: asyncio.Event, delay: float, error: Exception) -> None:
        log.warning("%s; next try in %.1f s", error, delay)
        await _wait_any(stop, timeout=delay)

    def _backoff(self) -> Backoff:
        s = self._settings
        return Backoff(s.backoff_base_s, s.backoff_cap_s, s.retry_after_cap_s)

    def status(self) -> dict[str, str]:
        """What a HeartbeatProbe reports."""
        held = self._hold()
        paused = {"mid_operational_state": "Paused", "paused_reason": held[:500]} if held else {}
        return paused | {
            "version": self._settings.version,
            "uptime_s": str(int(time.monotonic() - self.stats.started)),
            "jobs_in_flight": str(len(self._tasks)),
            "jobs_answered": str(self.stats.answered),
            "outbox_depth": str(self._outbox.count()),
            "rss_kb": str(_rss_kb()),
            **self.health.summary(),
            "quarantined": "true" if self._gate is not None and self._gate.quarantined() else "false",
        }


def _fatal(error: BaseException) -> bool:
    """Errors of what every job depends on (the audit log, the disk): going on would do work that is
    not accounted for. Anything else belongs to one job and ends as that job's error result."""
    return isinstance(error, (HardeningError, OSError)) and not isinstance(error, AuditValueError)


def _error_outcome(record: OutputRecord, error: str) -> Outcome:
    payload = build_results(
        result=None, echo_record=record.echo(), parameters=(), probe_time_ms=0, error=error
    )
    return Outcome(payload, error, 0, "error")


async def _wait_any(*events: asyncio.Event, timeout: float | None) -> None:
    waiters = [asyncio.create_task(e.wait()) for e in events]
    try:
        if waiters:
            await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        elif timeout:
            await asyncio.sleep(timeout)
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


async def _relay(source: asyncio.Event, target: asyncio.Event) -> None:
    await source.wait()
    target.set()


def _describe(error: BaseException) -> str:
    """Our own errors carry user-facing messages; anything else is named by type only (it may hold data)."""
    from appliance.errors import ApplianceError
    from hardening.errors import HardeningError

    if isinstance(error, (ApplianceError, HardeningError)):
        return f"{type(error).__name__}: {error}"
    return f"unexpected {type(error).__name__}"
