"""Group 2, the queue: enqueue->result latency (p50, p99) at the default poll interval, idle and busy;
end-to-end HTTP jobs/s; the instance's requests per minute from an idle appliance (the load midbox puts
on the instance). One source appliance (`python -m appliance run`) against the development instance."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator

from tests.bench.common import Row, Sizes, median, p99
from tests.bench.part_http import python_target
from tests.bench.rig import Peers, Rig, http_job, rig, source_midbox

GROUP = "2 queue"
DEFAULT_POLL_S = 5.0  # appliance.config.model's default poll_interval_s
ROWS = (
    "enqueue→result p50, default poll (5 s), idle",
    "enqueue→result p99, default poll (5 s), idle",
    "enqueue→result p50, default poll (5 s), busy",
    "enqueue→result p99, default poll (5 s), busy",
    "end-to-end HTTP jobs/s",
    "instance requests per minute, idle appliance",
    "enqueue→result p50, poll 0.1 s, idle (the appliance's own part)",
)
SHORT_POLL_S = 0.1


def latencies(r: Rig, agent: str, peers: Peers, count: int, spread_s: float) -> list[float]:
    """``count`` jobs, each enqueued at a random moment within ``spread_s``: seconds until each answer."""
    random.seed(19)
    offsets = sorted(random.uniform(0, spread_s) for _ in range(count))
    sent: dict[str, float] = {}
    seen: dict[str, float] = {}
    start = time.perf_counter()
    deadline = start + spread_s + 4 * DEFAULT_POLL_S + 30
    while len(seen) < count and time.perf_counter() < deadline:
        now = time.perf_counter() - start
        while offsets and offsets[0] <= now:
            offsets.pop(0)
            [sys_id] = r.enqueue(agent, [http_job(peers)])
            sent[sys_id] = time.perf_counter()
        pending = [i for i in sent if i not in seen]
        for sys_id in r.answered(pending) if pending else ():
            seen[sys_id] = time.perf_counter()
        time.sleep(0.01)
    if len(seen) < count:
        raise TimeoutError(f"{count - len(seen)} of {count} latency jobs unanswered")
    return [seen[i] - sent[i] for i in sent]


def run(sizes: Sizes) -> Iterator[Row]:
    with python_target() as base, rig(sizes.work, source_midbox(), Peers(http=base)) as r:
        peers = r.peers
        app = r.start("edge-01", poll_s=DEFAULT_POLL_S, concurrency=64)
        r.wait(r.enqueue(app.agent, [http_job(peers)]), timeout=60)  # up and answering
        # 1. idle: what an appliance with no work costs the instance
        window = sizes.pickf(3, 30)
        before = r.instance.state.requests
        time.sleep(window)
        idle_rpm = (r.instance.state.requests - before) * 60 / window
        # 2. latency with nothing else queued
        n = sizes.pick(3, 60)
        idle = latencies(r, app.agent, peers, n, spread_s=sizes.pickf(2, 40))
        yield Row(GROUP, ROWS[0], median(idle) * 1000, "ms", f"{n} jobs at random moments", runs=n)
        yield Row(GROUP, ROWS[1], p99(idle) * 1000, "ms", f"{n} jobs at random moments", runs=n)
        # 3. throughput: a burst of HTTP jobs, queued at once
        burst = sizes.pick(50, 1000)
        rates = [
            burst / r.wait(r.enqueue(app.agent, [http_job(peers)] * burst), timeout=300)
            for _ in range(sizes.runs)
        ]
        # 4. busy: the same latency jobs while a backlog of slower jobs drains
        backlog = sizes.pick(50, 1500)
        slow = r.enqueue(app.agent, [http_job(peers, "/work?ms=20")] * backlog)
        busy = latencies(r, app.agent, peers, n, spread_s=sizes.pickf(2, 20))
        r.wait(slow, timeout=600)
        peer = f"{n} jobs at random moments behind {backlog:,} queued 20 ms HTTP jobs"
        yield from [
            Row(GROUP, ROWS[2], median(busy) * 1000, "ms", peer, runs=n),
            Row(GROUP, ROWS[3], p99(busy) * 1000, "ms", peer, runs=n),
            Row(
                GROUP,
                ROWS[4],
                median(rates),
                "jobs/s",
                f"{burst:,} RESTProbe jobs to a Python target, max_concurrent_probes 64, default poll",
                runs=len(rates),
            ),
            Row(
                GROUP,
                ROWS[5],
                idle_rpm,
                "req/min",
                f"{window:.0f} s with no jobs, poll {DEFAULT_POLL_S:.0f} s",
                runs=1,
            ),
        ]
        # 5. a short poll: the wait for the next poll mostly gone, what is left is the appliance's
        r.stop(app)
        app = r.start("edge-01", poll_s=SHORT_POLL_S, concurrency=64)
        r.wait(r.enqueue(app.agent, [http_job(peers)]), timeout=60)
        short = latencies(r, app.agent, peers, n, spread_s=sizes.pickf(1, 10))
        yield Row(GROUP, ROWS[6], median(short) * 1000, "ms", f"{n} jobs at random moments", runs=n)
