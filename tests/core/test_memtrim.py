"""Freed heap memory goes back to the OS when the appliance goes idle (appliance.memtrim; issue 19)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from appliance.memtrim import TRIM_INTERVAL_S, IdleTrim


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_trims_after_start_then_only_after_work_and_not_too_often() -> None:
    calls: list[int] = []
    clock = Clock()
    trim = IdleTrim(lambda pad: calls.append(pad) or 1, clock=clock)
    assert trim.idle() and calls == [0]  # start-up's garbage
    assert not trim.idle()  # nothing ran since
    trim.worked()
    assert not trim.idle()  # ran, but the last trim was just now
    clock.now += TRIM_INTERVAL_S
    assert trim.idle() and calls == [0, 0]
    clock.now += 10 * TRIM_INTERVAL_S
    assert not trim.idle()  # idle for long, but nothing new to give back


def test_without_glibc_it_does_nothing() -> None:
    assert not IdleTrim(None).idle()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_the_real_trim_gives_freed_heap_back() -> None:
    # Many mid-sized blocks (above pymalloc's 512 bytes, below glibc's mmap threshold) land in the
    # brk heap; freed, glibc keeps them until trimmed. The one kept at the end pins the heap's top,
    # so only malloc_trim, not free() itself, can release the pages under it.
    code = """
from appliance.memtrim import IdleTrim
def rss():
    return int([l for l in open('/proc/self/status') if l.startswith('VmRSS')][0].split()[1])
blocks = [bytearray(2000) for _ in range(40000)]
keep = bytearray(2000)
del blocks
before = rss()
assert IdleTrim.for_this_process().idle()
print(before - rss())
"""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    released_kib = int(done.stdout.strip())
    assert released_kib > 40_000, released_kib  # about 80 MB were freed; most of it must go back
