"""Small asyncio helpers the job path shares."""

from __future__ import annotations

import asyncio


async def wait_any(*events: asyncio.Event, timeout: float | None) -> None:
    """Until one of ``events`` is set or ``timeout`` passes (with no events: just the timeout)."""
    waiters = [asyncio.create_task(e.wait()) for e in events]
    try:
        if waiters:
            await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        elif timeout:
            await asyncio.sleep(timeout)
    finally:
        for w in waiters:
            w.cancel()


async def relay(source: asyncio.Event, target: asyncio.Event) -> None:
    await source.wait()
    target.set()
