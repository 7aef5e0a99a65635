"""Freed heap memory goes back to the OS when the appliance goes idle (appliance.memtrim; issue 19)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from appliance.memtrim import PAGEOUT_QUIET_S, TRIM_INTERVAL_S, IdleTrim, cold_file_ranges


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


SMAPS = """\
55d0c0a00000-55d0c0a01000 r--p 00000000 08:01 131 /usr/bin/python3.11
Rss:                   4 kB
Anonymous:             0 kB
VmFlags: rd mr mw me dw sd
55d0c0a01000-55d0c0c00000 r-xp 00001000 08:01 131 /usr/bin/python3.11
Anonymous:             0 kB
55d0c0e00000-55d0c0e10000 r--p 00400000 08:01 131 /usr/bin/python3.11
Anonymous:             8 kB
55d0c0e10000-55d0c0e20000 rw-p 00410000 08:01 131 /usr/bin/python3.11
Anonymous:             0 kB
55d0c1000000-55d0c2000000 rw-p 00000000 00:00 0 [heap]
Anonymous:          1024 kB
7f0000000000-7f0000100000 rw-p 00000000 00:00 0
Anonymous:           512 kB
7f0000100000-7f0000200000 r--p 00000000 00:00 0
Anonymous:             0 kB
7f0000200000-7f0000300000 r-xp 00000000 08:01 77 /tmp/_MEI a b/lib crypto.so (deleted)
Anonymous:             0 kB
7f0000300000-7f0000301000 rw-s 00000000 00:01 9 /memfd:libffi (deleted)
Anonymous:             0 kB
7f0000400000-7f0000401000 r--s 00000000 08:01 12 /usr/lib/locale/C.utf8/LC_CTYPE
Anonymous:             0 kB
7ffd00000000-7ffd00002000 r-xp 00000000 00:00 0 [vdso]
Anonymous:             0 kB
"""


def test_only_read_only_file_mappings_without_a_copied_page_are_named() -> None:
    assert list(cold_file_ranges(SMAPS)) == [
        (0x55D0C0A00000, 0x55D0C0A01000),  # rodata of the executable
        (0x55D0C0A01000, 0x55D0C0C00000),  # its code
        # not: relocated data (one copied page), writable data, the heap, anonymous memory
        (0x7F0000200000, 0x7F0000300000),  # a library unpacked to a path with spaces, since deleted
        # not: a writable shared memfd
        (0x7F0000400000, 0x7F0000401000),  # a read-only shared file
        # not: the vdso
    ]


def test_pages_out_once_after_a_quiet_spell_and_again_only_after_more_work() -> None:
    advised: list[float] = []
    clock = Clock()
    trim = IdleTrim(None, pageout=lambda: advised.append(clock.now) or 1, clock=clock)
    assert not trim.idle()  # start-up was just now
    clock.now += PAGEOUT_QUIET_S - 1
    assert not trim.idle() and advised == []
    clock.now += 1
    assert trim.idle() and advised == [clock.now]
    clock.now += 10 * PAGEOUT_QUIET_S
    assert not trim.idle()  # nothing ran since: what could come back came back through the polls
    trim.worked()
    clock.now += PAGEOUT_QUIET_S / 2
    assert not trim.idle()  # a job was just now
    clock.now += PAGEOUT_QUIET_S / 2
    assert trim.idle() and len(advised) == 2


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux's madvise(MADV_PAGEOUT)")
def test_the_real_pageout_hands_back_file_pages_and_changes_no_memory(tmp_path: Path) -> None:
    # The kernel pages out only pages no other process maps, so the test maps files of its own (as
    # the frozen binary maps the libraries it unpacked): one read-only, one private and written to.
    code = f"""
import hashlib, mmap, os
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from appliance.memtrim import _linux_pageout
def rss(kind):
    return int([l for l in open('/proc/self/status') if l.startswith(kind)][0].split()[1])
key, nonce = bytes(32), bytes(12)
sealed = AESGCM(key).encrypt(nonce, b'secret' * 1000, None)
heap = bytearray(os.urandom(20_000_000))  # anonymous memory: must stay resident and unchanged
heap_digest = hashlib.sha256(heap).digest()
with open({str(tmp_path / "ro")!r}, 'wb') as f:
    f.write(os.urandom(16 << 20))
with open({str(tmp_path / "cow")!r}, 'wb') as f:
    f.write(bytes(4 << 20))
ro_file = open({str(tmp_path / "ro")!r}, 'rb')
ro = mmap.mmap(ro_file.fileno(), 0, access=mmap.ACCESS_READ)
ro_digest = hashlib.sha256(ro).digest()  # reads every page in
cow_file = open({str(tmp_path / "cow")!r}, 'r+b')
cow = mmap.mmap(cow_file.fileno(), 0, access=mmap.ACCESS_COPY)
cow[::4096] = b'x' * len(cow[::4096])  # private copies of its pages, in this process only
before = rss('RssFile:'), rss('RssAnon:')
advised = _linux_pageout()()
after = rss('RssFile:'), rss('RssAnon:')
assert hashlib.sha256(heap).digest() == heap_digest
assert cow[::4096] == b'x' * len(cow[::4096])
assert hashlib.sha256(ro).digest() == ro_digest  # read back from the file
assert AESGCM(key).decrypt(nonce, sealed, None) == b'secret' * 1000
print(advised, before[0] - after[0], before[1] - after[1])
"""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    advised, file_freed_kib, anon_freed_kib = (int(x) for x in done.stdout.split())
    if advised == 0 and tuple(int(x) for x in os.uname().release.split(".")[:2]) < (5, 4):
        pytest.skip("this kernel has no MADV_PAGEOUT (Linux 5.4 and later)")
    assert file_freed_kib > 15_000, file_freed_kib  # the 16 MiB read-only mapping went
    assert anon_freed_kib < 1_000, anon_freed_kib  # the heap and the copied pages stayed
