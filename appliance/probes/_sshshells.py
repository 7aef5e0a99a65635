"""Which logins answered the POSIX shell check lately, so the next sessions to them can skip it.

The check costs each connection a second session: on OpenSSH 9.2 about 2.6 ms of sshd's CPU (a fork
and an exec of the login shell) and ours for a channel, against some 18 ms for the whole connection.
Discovery sends a host dozens of commands in a burst, each on a new connection; the login shell of
one user on one host does not change between them. So one session per login runs the check while
the others that reach that point wait for its verdict; a pass is remembered for ``ttl_s``. Entries
are keyed by address, port and user; the host key is pinned and checked on every connection, so a
pass cannot carry over to another machine. A failed check is never remembered: each session that
waited on it checks for itself.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

Login = tuple[str, int, str]  # address, port, user


class PosixShells:
    """Shared by the probe's session threads; every method takes the lock briefly."""

    def __init__(self, ttl_s: float, entries: int, clock: Callable[[], float]) -> None:
        if ttl_s < 0 or entries < 1:
            raise ValueError("ttl_s must be >= 0 and entries >= 1")
        self._ttl_s = ttl_s
        self._entries = entries
        self._clock = clock
        self._lock = threading.Lock()
        self._until: dict[Login, float] = {}  # passes; insertion order is expiry order
        self._checking: dict[Login, threading.Event] = {}  # checks under way, set when settled

    def ask(self, login: Login, wait_s: float) -> bool:
        """True if ``login`` passed lately. False: the caller checks now and must call ``settle``.

        While another session checks ``login``, this waits (up to ``wait_s``) for its verdict.
        """
        if self._ttl_s == 0:
            return False
        deadline = self._clock() + wait_s
        while True:
            with self._lock:
                until = self._until.get(login)
                if until is not None and until > self._clock():
                    return True
                under_way = self._checking.get(login)
                if under_way is None:
                    self._checking[login] = threading.Event()
                    return False
            remaining = deadline - self._clock()
            if remaining <= 0 or not under_way.wait(remaining):
                return self._claim_anyway(login)

    def settle(self, login: Login, passed: bool) -> None:
        """The caller's check of ``login`` ended; wake whoever waits for it."""
        if self._ttl_s == 0:
            return
        with self._lock:
            if passed:
                self._remember(login)
            under_way = self._checking.pop(login, None)
        if under_way is not None:
            under_way.set()

    def _claim_anyway(self, login: Login) -> bool:
        # The other check is slow: check here too rather than wait longer than the caller's timeout.
        with self._lock:
            until = self._until.get(login)
            if until is not None and until > self._clock():
                return True
            self._checking.setdefault(login, threading.Event())
            return False

    def _remember(self, login: Login) -> None:
        self._until.pop(login, None)  # re-inserted at the end: the dict stays ordered by expiry
        now = self._clock()
        while self._until:  # drop the expired ones, then the oldest while full
            first = next(iter(self._until))
            if self._until[first] > now and len(self._until) < self._entries:
                break
            del self._until[first]
        self._until[login] = now + self._ttl_s
