"""Telling the service manager how the appliance is: systemd's notify protocol, stdlib only.

systemd (``Type=notify``) hands the process ``NOTIFY_SOCKET``; each message is one datagram of
``KEY=VALUE`` lines (sd_notify(3)). ``READY=1`` is sent after the first successful poll, so a unit is
"active" only once the instance answered; ``WATCHDOG=1`` from a task on the event loop, so a loop
blocked by a stuck call stops the pings and systemd restarts the service after ``WatchdogSec=``;
``RELOADING=1`` and ``READY=1`` around a reload; ``STOPPING=1`` at stop; ``STATUS=`` a one-line
summary for ``systemctl status``. Without ``NOTIFY_SOCKET`` (a shell, the Windows SCM) the same
events are log lines, which is what the Windows service's log file and event log show.
"""

from __future__ import annotations

import logging
import socket
import time
from dataclasses import dataclass

log = logging.getLogger(__name__)

MAX_STATUS_CHARS = 200


@dataclass(frozen=True)
class NotifySettings:
    """Read from the environment once, by the entry point."""

    socket_path: str | None = None  # $NOTIFY_SOCKET
    watchdog_usec: int | None = None  # $WATCHDOG_USEC, when $WATCHDOG_PID is absent or ours

    @classmethod
    def from_environ(cls, environ: dict[str, str], pid: int) -> NotifySettings:
        path = environ.get("NOTIFY_SOCKET") or None
        usec: int | None = None
        raw = environ.get("WATCHDOG_USEC", "")
        owner = environ.get("WATCHDOG_PID", "")
        if raw.isdigit() and int(raw) > 0 and (not owner or owner == str(pid)):
            usec = int(raw)
        return cls(path, usec)


class Notifier:
    """One per process. Every send is best effort: the service manager's view must never stop the work."""

    def __init__(self, settings: NotifySettings) -> None:
        self._settings = settings
        self._address = _address(settings.socket_path) if settings.socket_path else None
        self._failed = False
        self._ready = False
        self._status = ""

    @property
    def watchdog_interval_s(self) -> float | None:
        """How often to ping: half the manager's timeout, as sd_watchdog_enabled(3) advises."""
        usec = self._settings.watchdog_usec
        return usec / 2_000_000 if usec and self._address is not None else None

    def ready(self, status: str) -> None:
        """The first successful poll (and the end of each reload)."""
        first = not self._ready
        self._ready = True
        self._status = _one_line(status)
        if self._address is None:
            if first:
                log.info("service ready: %s", self._status)
            return
        self._send(f"READY=1\nSTATUS={self._status}")

    def status(self, text: str) -> None:
        line = _one_line(text)
        if line == self._status:
            return  # one datagram per change, not per poll
        self._status = line
        if self._address is None:
            return  # the log already says what changed
        self._send(f"STATUS={line}")

    def reloading(self) -> None:
        if self._address is None:
            log.info("service reloading its config")
            return
        # MONOTONIC_USEC: systemd >= 253 pairs it with the READY=1 that ends the reload.
        self._send(f"RELOADING=1\nMONOTONIC_USEC={time.monotonic_ns() // 1000}\nSTATUS=reloading the config")

    def stopping(self, reason: str) -> None:
        if self._address is None:
            return
        self._send(f"STOPPING=1\nSTATUS=stopping: {_one_line(reason)}")

    def watchdog(self) -> None:
        if self._address is not None:
            self._send("WATCHDOG=1")

    def _send(self, message: str) -> None:
        assert self._address is not None
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.sendto(message.encode("utf-8", "replace"), self._address)
        except OSError as e:
            if not self._failed:
                log.warning(
                    "could not notify systemd through NOTIFY_SOCKET (%s); the unit should say "
                    "NotifyAccess=main, as 'midbox service render-unit' writes it",
                    e.strerror,
                )
            self._failed = True


def _address(path: str) -> str | bytes:
    # '@' names a socket in the abstract namespace (sd_notify(3)).
    return b"\0" + path[1:].encode() if path.startswith("@") else path


def _one_line(text: str) -> str:
    return " ".join(text.split())[:MAX_STATUS_CHARS]


def summary(state: str, config_version: int | None, jobs_ok: int, problems: list[str]) -> str:
    """The STATUS= line: what 'systemctl status midbox' shows under the unit."""
    text = f"{state}, config version {config_version}, {jobs_ok} jobs answered"
    return f"{text}; problems: {', '.join(problems)}" if problems else text
