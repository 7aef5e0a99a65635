"""Rows reach the result while a laned walk still fetches (``LaneWalk``'s sink), in OID order, and a
full result stops the walk. The agent here is an in-memory table: these pin the ordering logic; the
real snmpd tests in test_snmpwalk.py pin the same rows end to end."""

from __future__ import annotations

import asyncio
import bisect

from appliance.mib.oids import Oid
from appliance.mib.table import mib_oids
from appliance.probes.snmp.ber import Value
from appliance.probes.snmp.walk import LaneWalk

ENTRY = (1, 3, 6, 1, 2, 1, 25, 6, 3, 1)  # hrSWInstalledEntry: five named columns to cut at
ROOT = ENTRY[:-1]
ROWS: list[tuple[Oid, Value]] = [
    ((*ENTRY, column, instance), ("Integer32", instance))
    for column in range(1, 6)
    for instance in range(1, 301)
]


class Agent:
    """GETBULK over ROWS (then one endOfMibView): counts the pages it served."""

    def __init__(self) -> None:
        self.pages = 0

    async def fetch(self, after: Oid) -> list[tuple[Oid, Value]]:
        await asyncio.sleep(0)
        self.pages += 1
        oids = [oid for oid, _ in ROWS]
        at = bisect.bisect_right(oids, after)
        page = ROWS[at : at + 20]
        return page if len(page) == 20 else [*page, ((1, 3, 6, 1, 9), ("endOfMibView", None))]


def walk(lanes: int, sink: object) -> tuple[LaneWalk, list[tuple[Oid, Value]], bool, Agent]:
    agent = Agent()
    lw = LaneWalk(agent.fetch, ROOT, lanes, 10_000, None, "agent", mib_oids(), lambda o, v: 1, sink)  # type: ignore[arg-type]
    rows, complete = asyncio.run(lw.run())
    return lw, rows, complete, agent


def test_the_sink_gets_every_row_in_order_while_the_lanes_still_fetch() -> None:
    handed: list[tuple[Oid, Value]] = []
    pages_at_first_hand: list[int] = []
    agents: list[Agent] = []

    def sink(rows: list[tuple[Oid, Value]]) -> bool:
        if not handed:
            pages_at_first_hand.append(agents[0].pages if agents else -1)
        handed.extend(rows)
        return True

    agent = Agent()
    agents.append(agent)
    lw = LaneWalk(agent.fetch, ROOT, 4, 10_000, None, "agent", mib_oids(), lambda o, v: 1, sink)
    rows, complete = asyncio.run(lw.run())
    assert complete and rows == ROWS and handed == ROWS
    assert 0 < pages_at_first_hand[0] < agent.pages // 4  # handed early, not after the walk


def test_a_full_sink_stops_the_walk() -> None:
    handed: list[tuple[Oid, Value]] = []

    def sink(rows: list[tuple[Oid, Value]]) -> bool:
        for row in rows:
            if len(handed) == 130:
                return False
            handed.append(row)
        return True

    lw, _, _, agent = walk(4, sink)
    _, _, _, whole = walk(4, None)
    assert lw.refused and handed == ROWS[:130]
    assert agent.pages < whole.pages // 2
