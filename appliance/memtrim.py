"""Hand memory back to the OS when the appliance goes idle.

Two kinds, both touching no live object:

- **Freed heap** (glibc's ``malloc_trim``). CPython returns its own small-object arenas when they
  empty, but glibc keeps every page ``free()``d into the main heap and the per-thread arenas until
  something asks for it again. After start-up (config, TLS, audit recovery) and after a burst of jobs
  that is several MiB an idle appliance holds for nothing (measured on the frozen binary: 5 MiB after
  start, more after 1,000 jobs; issue 19). A trim costs about a millisecond, so it runs at most once
  per ``TRIM_INTERVAL_S``, and only when jobs ran since the last one.
- **Code pages of libraries** (Linux's ``madvise(MADV_PAGEOUT)``, kernel 5.4 and later). Start-up
  touches most of cryptography's Rust module, both OpenSSLs and libpython: about 13 MiB of read-only
  file pages an idle appliance does not use again, resident until the kernel needs the memory. After
  ``PAGEOUT_QUIET_S`` without a job they are handed back; what the poll loop uses comes back on the
  next poll, the rest on the next job (read again from the file, as at start). Only read-only file
  mappings without a single copied-on-write page are named, so no anonymous memory (the heap, where
  secrets live) is ever pushed towards swap, and no page's contents can change: a paged-out file
  page is read again from the same file.

Where there is no glibc or no such ``madvise`` (Windows, musl, older kernels) each does nothing.
Windows has no equivalent that spares private pages (``EmptyWorkingSet`` would page the heap out
too), so it is not used there.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

log = logging.getLogger(__name__)

TRIM_INTERVAL_S = 10.0  # not a cap: how often an appliance busy on and off may trim at most
# Several poll intervals (5 s by default) without a job. Shorter would page code out between the jobs
# of a quiet but steady stream, only to read it back for the next one.
PAGEOUT_QUIET_S = 30.0
_MADV_PAGEOUT = 21  # <linux/mman.h>, since 5.4


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


def cold_file_ranges(smaps: str) -> Iterator[tuple[int, int]]:
    """The (start, end) of every read-only, file-backed mapping in ``smaps`` (the text of
    /proc/PID/smaps) that holds no anonymous page. Writable mappings, pseudo-files ([heap], [stack],
    [vdso]) and anonymous mappings are never named; nor is a file mapping with one copied-on-write
    page (a library's relocated data), since paging that out would mean swap."""
    current: tuple[int, int] | None = None
    for line in smaps.splitlines():
        head, _, rest = line.partition(" ")
        if head.endswith(":"):
            if head == "Anonymous:" and current is not None:
                if rest.split()[0] == "0":
                    yield current
                current = None
            continue
        fields = rest.split(maxsplit=4)  # perms, offset, device, inode, path
        low, dash, high = head.partition("-")
        current = None
        if not dash or len(fields) < 5 or "w" in fields[0] or not fields[4].startswith("/"):
            continue
        try:
            current = (int(low, 16), int(high, 16))
        except ValueError:
            continue


def _linux_pageout() -> Callable[[], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        madvise = libc.madvise
    except (OSError, AttributeError):
        return None
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    madvise.restype = ctypes.c_int

    def pageout() -> int:
        # Mappings do not change while the appliance is idle (no job, so no library loads), so the
        # ranges read here are still the same mappings when madvise names them.
        try:
            smaps = Path("/proc/self/smaps").read_text(encoding="ascii", errors="replace")
        except OSError:
            return 0
        advised = 0
        for start, end in cold_file_ranges(smaps):
            if madvise(start, end - start, _MADV_PAGEOUT) == 0:
                advised += end - start
            elif ctypes.get_errno() == errno.EINVAL and advised == 0:
                return 0  # a kernel before 5.4: no MADV_PAGEOUT (or a locked mapping; the next is tried)
        return advised

    return pageout


class IdleTrim:
    """``worked()`` when a job starts; ``idle()`` when nothing runs (the last job ended, or a poll
    found nothing to do)."""

    def __init__(
        self,
        trim: Callable[[int], int] | None = None,
        *,
        pageout: Callable[[], int] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._trim = trim
        self._pageout = pageout
        self._clock = clock
        self._dirty = True  # start-up's garbage is the first thing to give back
        self._last = float("-inf")
        self._worked_at = clock()  # start-up counts as work: its code pages are the first to go
        self._paged_out = False

    @classmethod
    def for_this_process(cls) -> IdleTrim:
        return cls(_glibc_trim(), pageout=_linux_pageout())

    def worked(self) -> None:
        self._dirty = True
        self._worked_at = self._clock()
        self._paged_out = False

    def idle(self) -> bool:
        """Trim if due (and page code out once quiet long enough); True when either was done."""
        now = self._clock()
        paged = False
        if self._pageout is not None and not self._paged_out and now - self._worked_at >= PAGEOUT_QUIET_S:
            self._paged_out = paged = True
            log.debug("library mappings handed back: %d bytes advised", self._pageout())
        if self._trim is None or not self._dirty or now - self._last < TRIM_INTERVAL_S:
            return paged
        self._dirty, self._last = False, now
        released = self._trim(0)
        log.debug("malloc_trim: %s", "released memory" if released else "nothing to release")
        return True
