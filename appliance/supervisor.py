"""The running phase of the service: the runner, restarted on each config that verifies, and the
watchers that tell it when (the config file, 'midbox reload', certificate renewals, expiry, the audit
inbox, checkpoints, the systemd watchdog, signals).

``appliance.service.serve`` starts and stops the process around this, in the order of trust.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from appliance import __version__
from appliance.app import run_appliance
from appliance.checkpoints import anchor_checkpoint
from appliance.config.model import Config
from appliance.config.verify import ReloadOutcome, fingerprint, try_reload
from appliance.config_push import PushTarget
from appliance.errors import RunnerHaltedError
from appliance.health import Health
from appliance.host import Host
from appliance.limits import AUDIT_CHECKPOINT_ENTRIES, RELOAD_REQUEST_POLL_S
from appliance.queue.transport import instance_client
from appliance.reload_request import ReloadAnswer, read_request, write_answer
from appliance.sdnotify import Notifier, NotifySettings, summary
from appliance.status_file import Publisher
from appliance.stoprequest import StopRequest
from appliance.unpacked import UNPACKED_WATCH_S, Unpacked
from appliance.unpacked import watch as watch_unpacked
from appliance.validity import CHECK_INTERVAL_S, ValidityWatch, tls_fingerprint, tls_usable
from hardening.audit import AuditLog
from hardening.audit.inbox import INBOX_POLL_S, drain

# One logger name for the whole service lifecycle (startup.py and checkpoints.py use it too), so
# its log lines read the same wherever the code that writes them lives.
log = logging.getLogger("appliance.service")

CHECKPOINT_COUNT_CHECK_S = 1.0  # how often the entry count is looked at


@dataclass(frozen=True)
class ServiceOptions:
    config_path: Path
    state_dir: Path
    passphrase_file: Path | None = None
    credentials_directory: Path | None = None  # systemd's $CREDENTIALS_DIRECTORY, read by the CLI
    checkpoint_interval_s: float = 300.0
    # Also checkpoint once this many entries were written since the last one: under load the
    # unanchored tail (which could be cut unnoticed) stays short whatever the interval.
    checkpoint_entries: int = AUDIT_CHECKPOINT_ENTRIES
    config_watch_interval_s: float = 5.0
    # Expiry of the config and certificates is looked at this often, and at each deadline.
    validity_check_interval_s: float = CHECK_INTERVAL_S
    metrics_textfile: Path | None = None  # node_exporter's textfile collector, rewritten after every poll
    notify: NotifySettings = field(default_factory=NotifySettings)  # NOTIFY_SOCKET, WATCHDOG_USEC
    # The onefile binary's unpacked folder to keep whole (appliance.unpacked); None: this process's own.
    unpacked: Unpacked | None = None
    unpacked_watch_s: float = UNPACKED_WATCH_S


def record_upgrade_entries(state_dir: Path, audit: AuditLog) -> None:
    """What 'midbox upgrade' could not write while this process held the audit log (appliance.upgrade)."""
    from appliance.upgrade.auditq import drain

    try:
        drain(state_dir, audit)
    except OSError as e:
        log.warning("could not record the upgrade's audit entries: %s; check the state dir", e.strerror)


class Supervisor:
    """Runs the runner; restarts it on a config that verified; stops it on a signal."""

    def __init__(
        self,
        options: ServiceOptions,
        audit: AuditLog,
        host: Host,
        stop_request: StopRequest | None = None,
        health: Health | None = None,
    ) -> None:
        self._options = options
        self._health = health or Health(version=__version__, binary_sha256="")
        self._publisher = Publisher(options.state_dir, options.metrics_textfile)
        self._notifier = Notifier(options.notify)
        self._await_ready = True  # READY=1 goes out after the first successful poll of each runner
        self._stop_request = stop_request
        self._audit = audit
        self._host = host
        self._stop = asyncio.Event()
        self._reload = asyncio.Event()
        self._tls_changed = asyncio.Event()  # a certificate, key or CA file of the config changed
        self._validity = ValidityWatch(audit)
        self._reason = "signal"
        self._request: str | None = None  # a 'midbox reload' waiting for its verdict
        self._refused = False  # the last reload was refused: a good file put back is worth a log line
        self._http: httpx.AsyncClient | None = None  # the running runner's client to the instance
        self._failure: RunnerHaltedError | None = None  # what stops the appliance with exit 1

    async def run(self, config: Config, ready: Callable[[], None] | None) -> tuple[Config, str]:
        self._install_signals()
        if self._stop_request is not None:
            self._stop_request._attach(asyncio.get_running_loop(), self._stop)
        self._validity.check(config, dt.datetime.now(dt.UTC))
        background = [
            asyncio.create_task(self._watch_config(lambda: config), name="config-watch"),
            asyncio.create_task(self._checkpoints(lambda: config), name="checkpoints"),
            asyncio.create_task(self._watch_reload_requests(), name="reload-requests"),
            asyncio.create_task(self._watch_audit_inbox(), name="audit-inbox"),
            asyncio.create_task(self._watch_validity(lambda: config), name="validity"),
        ]
        unpacked = self._options.unpacked or Unpacked.of_this_process()
        if unpacked is not None:
            watching = watch_unpacked(unpacked, self._stop, self._fail, self._options.unpacked_watch_s)
            background.append(asyncio.create_task(watching, name="unpacked"))
        if (interval := self._notifier.watchdog_interval_s) is not None:
            background.append(asyncio.create_task(self._watchdog(interval), name="watchdog"))
        if ready is not None:
            ready()
        try:
            while True:
                run_stop = asyncio.Event()
                runner = asyncio.create_task(self._runner(config, run_stop), name="runner")
                config_changed = await self._until_stop_or_new_config(config, runner)
                run_stop.set()
                await runner  # drains: in-flight work finishes or fails within the deadline, results kept
                if config_changed is None:
                    if self._failure is not None:
                        raise self._failure
                    self._notifier.stopping(self._reason)
                    return config, self._reason
                config = config_changed
                self._validity.check(config, dt.datetime.now(dt.UTC))
                log.info("runner restarted on config version %d", config.version)
        finally:
            if self._stop_request is not None:
                self._stop_request._detach()
            for task in background:
                task.cancel()
            for task in background:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _runner(self, config: Config, stop: asyncio.Event) -> None:
        # One client per runner, shared with the checkpoints posted while it runs (one TLS pool).
        http = instance_client(
            config.instance, config.limits(), name=config.appliance.name, key_password=self._host.key_password
        )
        self._http = http
        try:
            await self._run_appliance(config, stop, http)
        finally:
            self._http = None
            await http.aclose()

    async def _run_appliance(self, config: Config, stop: asyncio.Event, http: httpx.AsyncClient) -> None:
        await run_appliance(
            config,
            http=http,
            state_dir=self._options.state_dir,
            audit=self._audit,
            credentials=self._host.credentials,
            stop=stop,
            seal_key=self._host.seal_key,
            hold=lambda: self._validity.hold,
            key_password=self._host.key_password,
            health=self._health,
            after_poll=self._after_poll,
            push_target=PushTarget(self._options.config_path, self._options.state_dir, self._reload.set),
        )

    def _after_poll(self, health: Health) -> None:
        # An expired config or certificate holds new work (appliance.validity): say so in the status.
        hold = self._validity.hold
        if hold is not None and health.state in ("running", "expired"):
            health.state, health.reason = "expired", hold
        elif hold is None and health.state == "expired":
            health.state, health.reason = "running", ""
        self._publisher.publish(health)
        record_upgrade_entries(self._options.state_dir, self._audit)
        if health.state != "running":
            return
        line = summary(
            health.state,
            health.config.version if health.config else None,
            sum(n for (_, outcome), n in health.counters.items() if outcome == "ok"),
            [p.key for p in health.problems()],
        )
        if self._await_ready:
            self._await_ready = False
            self._notifier.ready(line)
        else:
            self._notifier.status(line)

    def _fail(self, reason: str) -> None:
        """Stop with exit 1 once the runner has drained, so the service manager starts midbox again."""
        log.error("%s", reason)
        self._failure = RunnerHaltedError(reason)
        self._stop.set()

    async def _watchdog(self, interval_s: float) -> None:
        """Pings from the event loop itself: a loop blocked by a stuck call stops them, and systemd
        restarts the service after WatchdogSec=."""
        while True:
            self._notifier.watchdog()
            await asyncio.sleep(interval_s)

    async def _until_stop_or_new_config(self, config: Config, runner: asyncio.Task[None]) -> Config | None:
        """None when the appliance should stop; the new config when one verified."""
        while True:
            stop_wait = asyncio.create_task(self._stop.wait())
            reload_wait = asyncio.create_task(self._reload.wait())
            tls_wait = asyncio.create_task(self._tls_changed.wait())
            await asyncio.wait(
                {stop_wait, reload_wait, tls_wait, runner}, return_when=asyncio.FIRST_COMPLETED
            )
            for task in (stop_wait, reload_wait, tls_wait):
                task.cancel()
            if runner.done():
                self._reason = "error"
                runner.result()  # re-raises what stopped it
                return None
            if self._stop.is_set():
                if self._stop_request is not None and self._stop_request.requested:
                    self._reason = "service stop"
                return None
            if self._tls_changed.is_set():
                self._tls_changed.clear()
                if tls_usable(config, self._host.key_password):
                    log.info("a certificate or CA file changed: the runner restarts to use it")
                    return config
                continue
            self._reload.clear()
            self._notifier.reloading()
            outcome = try_reload(
                config,
                self._options.config_path,
                self._options.state_dir,
                dt.datetime.now(dt.UTC),
                self._audit,
            )
            # try_reload has logged a refusal (once); a good file put back after one is logged here.
            if not outcome.changed and outcome.reason is None and self._refused:
                log.info("the config file is back to the running version %d", config.version)
            self._refused = outcome.reason is not None
            self._answer(outcome)
            if outcome.changed:
                self._health.state = "reloading"
                self._await_ready = True
                return outcome.config
            self._notifier.ready(f"running, config version {config.version}")

    def _answer(self, outcome: ReloadOutcome) -> None:
        """The verdict for a waiting 'midbox reload', if one asked."""
        if self._request is None:
            return
        verdict = "reloaded" if outcome.changed else "refused" if outcome.reason else "unchanged"
        answer = ReloadAnswer(
            self._request,
            verdict,
            outcome.config.version,
            str(self._options.config_path),
            outcome.reason or "",
        )
        self._request = None
        try:
            write_answer(self._options.state_dir, answer)
        except OSError as e:
            log.warning("could not answer 'midbox reload' in %s: %s", self._options.state_dir, e.strerror)

    async def _watch_reload_requests(self) -> None:
        seen = read_request(self._options.state_dir)  # one left from before this start is not ours to answer
        while True:
            await asyncio.sleep(RELOAD_REQUEST_POLL_S)
            request = read_request(self._options.state_dir)
            if request is not None and request != seen:
                seen = self._request = request
                self._reload.set()

    async def _watch_audit_inbox(self) -> None:
        """Records what 'midbox creds test' hands over while this process holds the audit log."""
        while True:
            try:
                drain(self._options.state_dir, self._audit)
            except OSError as e:
                log.warning("the audit inbox cannot be read: %s; fix the audit directory's permissions", e)
            await asyncio.sleep(INBOX_POLL_S)

    def _install_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            # Signals reach only the main thread; a Windows service runs serve() on the thread
            # the SCM started and stops it through a StopRequest instead.
            return
        loop = asyncio.get_running_loop()
        if os.name == "nt":  # no add_signal_handler on Windows' proactor loop
            for sig in (signal.SIGINT, getattr(signal, "SIGBREAK", signal.SIGINT)):
                signal.signal(sig, lambda *_: loop.call_soon_threadsafe(self._stop.set))
            return
        loop.add_signal_handler(signal.SIGTERM, self._stop.set)
        loop.add_signal_handler(signal.SIGINT, self._stop.set)
        loop.add_signal_handler(signal.SIGHUP, self._reload.set)

    async def _watch_config(self, current: Callable[[], Config]) -> None:
        seen = fingerprint(self._options.config_path)
        tls_seen = (current().sha256, tls_fingerprint(current()))
        while True:
            await asyncio.sleep(self._options.config_watch_interval_s)
            now = fingerprint(self._options.config_path)
            if now != seen:
                seen = now
                self._reload.set()
            config = current()
            tls_now = (config.sha256, tls_fingerprint(config))
            # Files that changed under the same config are a renewal; a new config restarts anyway.
            if tls_now != tls_seen:
                if tls_now[0] == tls_seen[0]:
                    self._tls_changed.set()
                tls_seen = tls_now

    async def _watch_validity(self, current: Callable[[], Config]) -> None:
        """Re-check expiry on a timer, and just after each deadline or warning threshold."""
        interval = self._options.validity_check_interval_s
        while True:
            now = dt.datetime.now(dt.UTC)
            await asyncio.sleep(self._validity.next_check_s(current(), now, interval))
            self._validity.check(current(), dt.datetime.now(dt.UTC))

    async def _checkpoints(self, current: Callable[[], Config]) -> None:
        """A checkpoint every interval, or sooner once enough entries were written since the last."""
        opts = self._options
        last_size, last_time = self._audit.size, time.monotonic()
        while True:
            await asyncio.sleep(min(opts.checkpoint_interval_s, CHECKPOINT_COUNT_CHECK_S))
            grown = self._audit.size - last_size
            if grown >= opts.checkpoint_entries or time.monotonic() - last_time >= opts.checkpoint_interval_s:
                await anchor_checkpoint(
                    current(), self._audit, opts.state_dir, self._host.key_password, http=self._http
                )
                last_size, last_time = self._audit.size, time.monotonic()
