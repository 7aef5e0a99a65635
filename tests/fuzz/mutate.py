"""A small seed-mutation driver (what atheris/libFuzzer would do, without coverage feedback).

Mutations: bit and byte flips, interesting bytes, deletions, insertions, truncations, repeated
chunks, splices of two seeds, and tokens from the formats' own vocabulary. Each input gets 1-8
stacked mutations; the size is capped so a run cannot grow memory without bound.
"""

from __future__ import annotations

import contextlib
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

MAX_INPUT_BYTES = 256 * 1024

# Tokens of the formats under test: structure characters, keywords and boundary numbers.
TOKENS: tuple[bytes, ...] = (
    b"<",
    b">",
    b"/>",
    b"</",
    b'"',
    b"'",
    b"=",
    b"&",
    b"&amp;",
    b"&#0;",
    b"&#x10FFFF;",
    b"<!DOCTYPE a [",
    b"<!ENTITY e SYSTEM 'file:///'>",
    b"]]>",
    b"<![CDATA[",
    b"<?xml version='1.0' encoding='utf-16'?>",
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b":",
    b"null",
    b"true",
    b"false",
    b"NaN",
    b"Infinity",
    b"-0",
    b"1e999",
    b"9" * 30,
    b"9" * 5000,
    b"\\u0000",
    b"\\ud800",
    b"\\udfff",
    b"[[",
    b"]]",
    b'"""',
    b"'''",
    b"\\",
    b"\\n",
    b"\n",
    b"\r\n",
    b"\t",
    b"\x00",
    b"\xff",
    b"\xc0\x80",
    b"\xed\xa0\x80",
    b"\xe2\x80\xa8",
    b"\xef\xbb\xbf",
    "\u0662".encode(),
    "\uff11".encode(),
    "\u00e9".encode(),
    "\U0001f600".encode(),
    b"#",
    b"@",
    b"|1|",
    b"*",
    b"ssh-ed25519 ",
    b"ssh-rsa ",
    b"AAAA",
    b"====",
    b"=",
    b"0000-00-00T00:00:00Z",
    b"9999-12-31T23:59:59.999999Z",
    b"2027-02-30",
    b"\x00\x00\x00\x00",
    b"\xff\xff\xff\xff",
    b"\x7f\xff\xff\xff",
    b"\x80\x00\x00\x00",
    b"\x00\x00\x00\x01",
)
UNICODE_DIGITS = tuple(c.encode() for c in "\u0662\u0967\uff11\U0001d7d9")
INTERESTING = (0, 1, 0x7F, 0x80, 0xFF, 0x20, 0x0A, 0x22, 0x3C)


class Hang(Exception):
    """An execution ran past the hang budget."""


@contextlib.contextmanager
def _watchdog(seconds: float | None) -> Iterator[None]:
    # SIGALRM interrupts pure-Python loops and most C calls; only the main thread on POSIX can use it.
    usable = seconds is not None and hasattr(signal, "setitimer")
    usable = usable and threading.current_thread() is threading.main_thread()
    if not usable:
        yield
        return

    def fire(_signum: int, _frame: object) -> None:
        raise Hang(f"one execution took more than {seconds} s")

    old = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@dataclass
class Stats:
    executions: int = 0
    seconds: float = 0.0
    crashes: list[tuple[bytes, BaseException]] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.executions / self.seconds if self.seconds else 0.0


def mutate(data: bytes, seeds: Sequence[bytes], rng: random.Random) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.choice((1, 1, 2, 2, 3, 4, 8))):
        op = rng.randrange(12)
        n = len(buf)
        if op == 0 and n:  # bit flip
            i = rng.randrange(n)
            buf[i] ^= 1 << rng.randrange(8)
        elif op == 1 and n:  # random byte
            buf[rng.randrange(n)] = rng.randrange(256)
        elif op == 2 and n:  # interesting byte
            buf[rng.randrange(n)] = rng.choice(INTERESTING)
        elif op == 3 and n:  # delete a range
            i = rng.randrange(n)
            del buf[i : i + rng.randint(1, min(64, n - i))]
        elif op == 4:  # insert random bytes
            i = rng.randint(0, n)
            buf[i:i] = rng.randbytes(rng.randint(1, 16))
        elif op == 5 and n:  # truncate
            del buf[rng.randrange(n) :]
        elif op == 6 and n:  # repeat a chunk
            i = rng.randrange(n)
            chunk = buf[i : i + rng.randint(1, 64)]
            buf[i:i] = chunk * rng.choice((2, 3, 16, 200))
        elif op == 7 and seeds:  # splice with another seed
            other = rng.choice(seeds)
            if other:
                cut, start = rng.randint(0, n), rng.randrange(len(other))
                buf = buf[:cut] + bytearray(other[start:])
        elif op in (8, 9):  # a token of the formats
            i = rng.randint(0, n)
            token = rng.choice(TOKENS)
            if rng.random() < 0.5 and n:
                buf[i : i + len(token)] = token
            else:
                buf[i:i] = token
        elif op == 10 and n > 1:  # copy a chunk somewhere else
            i, j = rng.randrange(n), rng.randrange(n)
            buf[j:j] = buf[i : i + rng.randint(1, 32)]
        elif op == 11 and n:  # change a digit (counts, lengths, seqs), sometimes to a non-ASCII digit
            i = rng.randrange(n)
            if 0x30 <= buf[i] <= 0x39:
                if rng.random() < 0.2:
                    # One character for one character: "\\d" in a str pattern matches these too.
                    buf[i : i + 1] = rng.choice(UNICODE_DIGITS)
                else:
                    buf[i] = rng.choice(b"0123456789")
        if len(buf) > MAX_INPUT_BYTES:
            del buf[MAX_INPUT_BYTES:]
    return bytes(buf)


def run(
    target: Callable[[bytes], None],
    seeds: Sequence[bytes],
    *,
    seconds: float | None = None,
    executions: int | None = None,
    rng: random.Random,
    on_crash: Callable[[bytes, BaseException], None] | None = None,
    max_crashes: int = 10,
    hang_seconds: float | None = None,
) -> Stats:
    """Mutate ``seeds`` until the time or execution budget is spent; collect (input, exception) crashes."""
    if seconds is None and executions is None:
        raise ValueError("give seconds or executions")
    pool = [s for s in seeds] or [b""]
    stats = Stats()
    start = time.monotonic()
    deadline = start + seconds if seconds is not None else float("inf")
    seen: set[str] = set()
    while time.monotonic() < deadline and (executions is None or stats.executions < executions):
        data = mutate(rng.choice(pool), pool, rng)
        stats.executions += 1
        try:
            with _watchdog(hang_seconds):
                target(data)
        except Exception as e:
            # One report per distinct (type, last frame): the same bug found twice is one crash.
            tb = e.__traceback__
            while tb is not None and tb.tb_next is not None:
                tb = tb.tb_next
            key = f"{type(e).__name__}:{tb.tb_frame.f_code.co_filename if tb else ''}:{tb.tb_lineno if tb else 0}"
            if key not in seen:
                seen.add(key)
                stats.crashes.append((data, e))
                if on_crash is not None:
                    on_crash(data, e)
                if len(stats.crashes) >= max_crashes:
                    break
    stats.seconds = time.monotonic() - start
    return stats
