"""Group 8, scaling: end-to-end jobs/s and RSS from 1 to 4 appliances in one cluster on one instance,
and one appliance from 100 to 10,000 queued jobs. Source appliances (`python -m appliance run`)."""

from __future__ import annotations

import time
from collections.abc import Iterator

from tests.bench.common import Row, Sizes, median, rss_mib
from tests.bench.part_http import python_target
from tests.bench.rig import Appliance, Peers, Rig, http_job, rig, source_midbox

GROUP = "8 scaling"
COUNTS = (1, 2, 3, 4)
QUEUED = (100, 1_000, 10_000)  # --quick: 10, 30, 100
ROWS = (
    *(f"jobs/s, {k} appliance{'s' if k > 1 else ''}" for k in COUNTS),
    *(f"peak RSS per appliance, {k} appliance{'s' if k > 1 else ''}" for k in COUNTS),
    *(f"jobs/s, {n:,} queued jobs" for n in QUEUED),
    *(f"peak RSS, {n:,} queued jobs" for n in QUEUED),
)
POLL_S = 1.0


def drain(
    r: Rig, apps: list[Appliance], per_app: list[list[dict[str, str]]], timeout: float
) -> tuple[float, float]:
    """Jobs/s and the largest appliance's peak RSS while each app's share of jobs drains."""
    start = time.perf_counter()
    ids = [i for app, jobs in zip(apps, per_app, strict=True) for i in r.enqueue(app.agent, jobs)]
    pending, peak = ids, 0.0
    while pending:
        if time.perf_counter() - start > timeout:
            raise TimeoutError(f"{len(pending)} of {len(ids)} jobs unanswered after {timeout:.0f} s")
        peak = max([peak, *(rss_mib(a.proc.pid) for a in apps)])
        time.sleep(0.1)
        done = r.answered(pending)
        pending = [i for i in pending if i not in done]
    return len(ids) / (time.perf_counter() - start), peak


def run(sizes: Sizes) -> Iterator[Row]:
    with python_target() as base, rig(sizes.work, source_midbox(), Peers(http=base)) as r:
        names = [f"edge-{k:02d}" for k in range(1, max(COUNTS) + 1)]
        # ServiceNow assigns a load-balanced cluster's work to a member when it is queued: so does this.
        r.instance.state.clusters = [tuple(names)]
        job = http_job(r.peers)
        total = sizes.pick(40, 400)
        runs = min(sizes.runs, 3)  # 4 cluster sizes and 3 queue depths: keeps the part within its limit
        apps: list[Appliance] = []
        for k in COUNTS:
            while len(apps) < k:
                app = r.start(names[len(apps)], poll_s=POLL_S)
                r.wait(r.enqueue(app.agent, [job]), timeout=60)
                apps.append(app)
            share = [[job] * (total // k + (i < total % k)) for i in range(k)]
            got = [drain(r, apps, share, timeout=300) for _ in range(runs)]
            plural = "s" if k > 1 else ""
            peer = f"{total:,} HTTP jobs spread over the cluster, poll {POLL_S:.0f} s"
            yield Row(
                GROUP,
                f"jobs/s, {k} appliance{plural}",
                median([g[0] for g in got]),
                "jobs/s",
                peer,
                runs=len(got),
            )
            yield Row(GROUP, f"peak RSS per appliance, {k} appliance{plural}", median([g[1] for g in got]), "MiB",
                      "the largest member", runs=len(got))  # fmt: skip
        for app in apps[1:]:
            r.stop(app)
        one = apps[:1]
        for n, small in zip(QUEUED, (10, 30, 100), strict=True):
            count = sizes.pick(small, n)
            reps = 1 if count >= 1_000 else runs
            got = [drain(r, one, [[job] * count], timeout=600) for _ in range(reps)]
            yield Row(GROUP, f"jobs/s, {n:,} queued jobs", median([g[0] for g in got]), "jobs/s",
                      f"{count:,} HTTP jobs queued at once, one appliance", runs=reps)  # fmt: skip
            yield Row(GROUP, f"peak RSS, {n:,} queued jobs", median([g[1] for g in got]), "MiB",
                      f"{count:,} HTTP jobs queued at once, one appliance", runs=reps)  # fmt: skip
