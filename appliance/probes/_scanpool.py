"""What every scan of the Shazzam topic shares: one pacer, one global and a per-address cap, a deadline.

Both job shapes (midbox's own ``ranges`` + ``ports``, and the port-probe spec an instance builds) run
their work through one ``ScanPool`` per probe instance, so two scans at once still share one rate.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from hardening.policy import IPAddress

T = TypeVar("T")


class Pacer:
    """Spaces attempts at most ``rate`` per second, across every scan sharing it."""

    def __init__(self, rate: float) -> None:
        self._interval = 1.0 / rate
        self._next = 0.0

    async def wait(self) -> None:
        now = time.monotonic()
        slot = max(now, self._next)
        self._next = slot + self._interval
        if slot > now:
            await asyncio.sleep(slot - now)


class ScanPool:
    """``rate`` attempts/s and ``concurrency`` in flight for the probe; ``per_host`` for one address."""

    def __init__(self, *, rate: float, concurrency: int, per_host: int) -> None:
        if not 1 <= rate <= 100_000 or not 1 <= concurrency <= 4096 or not 1 <= per_host <= concurrency:
            raise ValueError("rate 1..100000, concurrency 1..4096, per_host 1..concurrency")
        self.pacer = Pacer(rate)
        self.per_host = per_host
        self._global = asyncio.Semaphore(concurrency)
        self._concurrency = concurrency

    async def run(
        self, addresses: Sequence[IPAddress], work: Callable[[int], Awaitable[T]], deadline_s: float
    ) -> list[T | None]:
        """``work(i)`` per index of ``addresses``, paced and capped; None where the deadline came first."""
        results: list[T | None] = [None] * len(addresses)
        host_slots: dict[IPAddress, asyncio.Semaphore] = {}
        index = iter(range(len(addresses)))

        async def worker() -> None:
            for i in index:
                slot = host_slots.setdefault(addresses[i], asyncio.Semaphore(self.per_host))
                async with self._global, slot:
                    await self.pacer.wait()
                    results[i] = await work(i)

        workers = [asyncio.create_task(worker()) for _ in range(min(self._concurrency, len(addresses)))]
        try:
            await asyncio.wait_for(asyncio.gather(*workers), deadline_s)
        except TimeoutError:
            pass  # report what finished; the caller marks the result truncated
        finally:
            for w in workers:
                w.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
        return results


@dataclass(frozen=True)
class Connect:
    """A TCP connect attempt: ``open`` (with the socket, the caller closes it), ``refused``,
    ``timed_out`` (no answer) or ``io_error`` (unreachable and the like, with the reason)."""

    state: str
    sock: socket.socket | None = None
    error: str = ""


async def tcp_connect(address: IPAddress, port: int, timeout_s: float) -> Connect:
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        # asyncio.timeout, not wait_for: no task per attempt (a /20 x 5 ports sweep: 1.54 -> 1.40 s).
        async with asyncio.timeout(timeout_s):
            await asyncio.get_running_loop().sock_connect(sock, (str(address), port))
    except BaseException as e:
        with contextlib.suppress(OSError):
            sock.close()  # also on cancellation, so a deadline never leaks a socket
        if isinstance(e, TimeoutError):
            return Connect("timed_out")
        if isinstance(e, OSError):
            if e.errno in (errno.ECONNREFUSED, errno.ECONNRESET):
                return Connect("refused")
            return Connect("io_error", error=e.strerror or type(e).__name__)
        raise
    return Connect("open", sock)
