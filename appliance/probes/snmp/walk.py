"""One walk in several lanes: the subtree cut into ranges at compiled-in MIB nodes, walked concurrently.

A sequential walk waits a full round trip (and the agent's work) per page. Here up to ``lanes`` ranges
are walked at once; every request still takes a slot of the per-agent cap, so a small agent never sees
more than that in flight. Ranges are ``(start, stop]``: each asks for what follows its ``start`` and
keeps rows up to ``stop``, so together they cover the subtree exactly once. A lane that runs out of
work splits the range that has yielded the most rows at the middle MIB node ahead of it (a big
table is cut between its columns); each split costs at most one page fetched twice. The ranges are joined
in OID order, so the rows are those of a sequential walk. If the varbind or byte budget runs out, the
walk stops and returns the in-order prefix it has; the caller continues that one sequentially.

With a ``sink``, rows are handed over in OID order while the lanes still fetch: each range's rows as
soon as every range before it is complete. The sink runs between the lanes' requests (after the
lane that got a page has sent its next request), a bounded chunk at a time, so the agent keeps
working while the result is built instead of waiting for it afterwards. A sink that returns False
(the result is full) stops the walk.
"""

from __future__ import annotations

import asyncio
import bisect
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from appliance.errors import ProbeError
from appliance.mib.oids import Oid, format_oid
from appliance.probes.snmp.ber import Value

Row = tuple[Oid, Value]
Fetch = Callable[[Oid], Awaitable[list[Row]]]  # the page of rows that follows an OID
Sink = Callable[[list[Row]], bool]  # rows in OID order; False: take no more
SINK_CHUNK = 256  # rows handed to the sink per turn of the event loop (about 1 ms of tree building)
SPLITS_PER_LANE = 2  # splits after the first cut: each may fetch one page twice
MIN_PAGES_TO_SPLIT = 2


@dataclass(eq=False)
class _Range:
    """Mutable state of one range during one walk (never shared beyond it)."""

    start: Oid
    stop: Oid | None  # None: to the end of the root's subtree
    rows: list[Row] = field(default_factory=list)
    pages: int = 0
    taken: bool = False
    done: bool = False
    ended: bool = False  # the agent's view of the subtree ended inside this range


class LaneWalk:
    def __init__(
        self,
        fetch: Fetch,
        root: Oid,
        lanes: int,
        cap: int,
        byte_cap: int | None,
        where: str,
        nodes: Sequence[Oid],
        row_bytes: Callable[[Oid, Value], int],
        sink: Sink | None = None,
    ) -> None:
        self._fetch = fetch
        self._sink = sink
        self.refused = False  # the sink took no more: the walk is over, not cut for the budget
        self._root = root
        self._lanes = lanes
        self._cap = cap
        self._byte_cap = byte_cap
        self._where = where
        self._row_bytes = row_bytes
        upper = (*root[:-1], root[-1] + 1)
        self._nodes = nodes[bisect.bisect_right(nodes, root) : bisect.bisect_left(nodes, upper)]
        self._ranges = [_Range(root, None)]
        self._splits_left = SPLITS_PER_LANE * lanes
        self._count = 0
        self._held = 0
        self._stopped = False
        self._head = 0  # the first range not yet handed to the sink in full
        self._handed = 0  # how many of its rows were
        self._flush_due: asyncio.Handle | None = None

    async def run(self) -> tuple[list[Row], bool]:
        """(the rows in OID order, whether they are the whole subtree rather than a budget-cut prefix)."""
        self._first_cut()
        tasks = [asyncio.ensure_future(self._lane()) for _ in range(self._lanes)]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if self._flush_due is not None:
                self._flush_due.cancel()
                self._flush_due = None
        if self._sink is not None:
            self._flush(self._count)  # what the lanes fetched last (a no-op after a refusal)
        rows: list[Row] = []
        for r in self._ranges:
            rows.extend(r.rows)
            if r.ended:
                return rows, True
            if not r.done:
                return rows, False
        return rows, True

    def _first_cut(self) -> None:
        """Cut the subtree into ``lanes`` ranges at evenly spaced MIB nodes (by count of nodes)."""
        nodes = self._nodes
        cuts = sorted({nodes[len(nodes) * i // self._lanes] for i in range(1, self._lanes)}) if nodes else []
        bounds: list[Oid] = [self._root, *cuts]
        self._ranges = [
            _Range(lo, bounds[i + 1] if i + 1 < len(bounds) else None) for i, lo in enumerate(bounds)
        ]

    async def _lane(self) -> None:
        while not self._stopped:
            r = next((r for r in self._ranges if not r.taken), None) or self._split()
            if r is None:
                return
            r.taken = True
            await self._walk(r)

    def _split(self) -> _Range | None:
        """A new range cut off the busiest unfinished one at a MIB node past its position."""
        if self._splits_left <= 0:
            return None
        # Only a range that has gone on for a few pages: a thin one would end before the cut pays off.
        busy = sorted(
            (r for r in self._ranges if r.taken and not r.done and r.pages >= MIN_PAGES_TO_SPLIT),
            key=lambda r: -len(r.rows),
        )
        for r in busy:
            # The middle MIB node ahead of it: halving keeps the number of splits (and of pages fetched
            # twice) low, and a table whose columns are the only nodes left is cut between columns.
            lo = bisect.bisect_right(self._nodes, r.rows[-1][0])
            hi = len(self._nodes) if r.stop is None else bisect.bisect_left(self._nodes, r.stop)
            if lo < hi:
                cut = self._nodes[(lo + hi) // 2]
                new = _Range(cut, r.stop)
                r.stop = cut
                self._ranges.insert(self._ranges.index(r) + 1, new)
                self._splits_left -= 1
                return new
        return None

    async def _walk(self, r: _Range) -> None:
        root, depth = self._root, len(self._root)
        while not r.done and not self._stopped:
            current = r.rows[-1][0] if r.rows else r.start
            page = await self._fetch(current)
            r.pages += 1
            if r.done:  # a range before this one ended the walk meanwhile
                return
            if not page:
                self._end(r)
                return
            for oid, value in page:
                if value[0] == "endOfMibView" or oid[:depth] != root:
                    self._end(r)
                    return
                if oid <= current:
                    raise ProbeError(
                        f"SNMP agent {self._where} returned a non-increasing OID {format_oid(oid)}"
                    )
                if r.stop is not None and oid > r.stop:
                    r.done = True
                    return
                r.rows.append((oid, value))
                self._count += 1
                self._held += self._row_bytes(oid, value)
                current = oid
            if self._count >= self._cap or (self._byte_cap is not None and self._held > self._byte_cap):
                self._stopped = True
            self._schedule_flush()

    def _schedule_flush(self) -> None:
        """Hand rows to the sink once this lane has sent its next request (``call_soon`` runs after the
        lane's task suspends), so the agent works on it meanwhile."""
        if self._sink is not None and self._flush_due is None and not self.refused:
            self._flush_due = asyncio.get_running_loop().call_soon(self._flush_turn)

    def _flush_turn(self) -> None:
        self._flush_due = None
        if self._flush(SINK_CHUNK):  # more is ready: go on after the loop has read the sockets
            self._schedule_flush()

    def _flush(self, budget: int) -> bool:
        """Hand up to ``budget`` final rows to the sink, in order; True when more are ready now."""
        assert self._sink is not None
        while self._head < len(self._ranges) and not self.refused:
            r = self._ranges[self._head]
            if self._handed < len(r.rows):
                if budget <= 0:
                    return True
                chunk = r.rows[self._handed : self._handed + budget]
                self._handed += len(chunk)
                budget -= len(chunk)
                if not self._sink(chunk):
                    self.refused = self._stopped = True
                    return False
                continue
            if not r.done or r.ended:  # its next rows are not fetched yet, or the subtree ends here
                return False
            self._head += 1
            self._handed = 0
        return False

    def _end(self, r: _Range) -> None:
        """The subtree ends in ``r``: every later range is empty for a consistent agent, and is dropped
        for an inconsistent one (a sequential walk would have stopped here too)."""
        r.done = r.ended = True
        for later in self._ranges[self._ranges.index(r) + 1 :]:
            later.done = True
            later.rows.clear()
