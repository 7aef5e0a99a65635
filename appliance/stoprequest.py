"""A stop asked for from another thread (the Windows service control handler)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable


class StopRequest:
    """A stop asked for from another thread: the Windows service control handler runs on the
    dispatcher thread, not on the event loop's, so it cannot touch an asyncio.Event directly."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requested = False
        self._wake: Callable[[], None] | None = None

    def request(self) -> None:
        """Ask the appliance to stop gracefully; safe from any thread, any number of times."""
        with self._lock:
            self._requested = True
            wake = self._wake
        if wake is not None:
            wake()

    @property
    def requested(self) -> bool:
        with self._lock:
            return self._requested

    def _attach(self, loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
        def wake() -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nothing left to stop
                loop.call_soon_threadsafe(stop.set)

        with self._lock:
            self._wake = wake
            requested = self._requested
        if requested:  # asked before the appliance was up: stop as soon as it is
            stop.set()

    def _detach(self) -> None:
        with self._lock:
            self._wake = None
