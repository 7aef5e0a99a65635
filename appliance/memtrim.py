"""Hand freed heap memory back to the OS when the appliance goes idle (glibc's ``malloc_trim``).

CPython returns its own small-object arenas when they empty, but glibc keeps every page ``free()``d
into the main heap and the per-thread arenas until something asks for it again. After start-up
(config, TLS, audit recovery) and after a burst of jobs that is several MiB an idle appliance holds
for nothing (measured on the frozen binary: 5 MiB after start, more after 1,000 jobs; issue 19). A
trim touches no live object and costs about a millisecond, so it runs at most once per
``TRIM_INTERVAL_S``, and only when jobs ran since the last one. Where there is no glibc (Windows,
musl) it does nothing.
"""

from __future__ import annotations

import ctypes
import logging
import os
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

TRIM_INTERVAL_S = 10.0  # not a cap: how often an appliance busy on and off may trim at most


def _glibc_trim() -> Callable[[int], int] | None:
    if os.name != "posix":
        return None
    try:
        libc = ctypes.CDLL(None)  # the process's own symbols: libc is already loaded
        trim = libc.malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


class IdleTrim:
    """``worked()`` when a job starts; ``idle()`` when nothing runs (the last job ended, or a poll
    found nothing to do)."""

    def __init__(
        self, trim: Callable[[int], int] | None = None, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._trim = trim
        self._clock = clock
        self._dirty = True  # start-up's garbage is the first thing to give back
        self._last = float("-inf")

    @classmethod
    def for_this_process(cls) -> IdleTrim:
        return cls(_glibc_trim())

    def worked(self) -> None:
        self._dirty = True

    def idle(self) -> bool:
        """Trim if due; True when it did."""
        now = self._clock()
        if self._trim is None or not self._dirty or now - self._last < TRIM_INTERVAL_S:
            return False
        self._dirty, self._last = False, now
        released = self._trim(0)
        log.debug("malloc_trim: %s", "released memory" if released else "nothing to release")
        return True
