"""Benchmark of the core cycle (not part of the test run): latency of one job, throughput of 500.

    python -m tests.bench.bench_core [--poll 0.1] [--jobs 500] [--latency-runs 20]

Runs the development instance and an HTTP target in this process and the appliance in a thread with
its own event loop, all over real mTLS on loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import threading
import time
from pathlib import Path

from appliance.app import run_appliance
from appliance.probes.base import MemoryAudit
from tests.helpers import (
    AGENT,
    LOOPBACK_HTTP,
    config_text,
    dev_instance,
    fast_limits,
    http_target,
    inputs,
    make_pki,
    params,
    trusted,
)
from tests.support.fakes import NoCredentials


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--poll", type=float, default=0.1)
    ap.add_argument("--jobs", type=int, default=500)
    ap.add_argument("--latency-runs", type=int, default=20)
    ap.add_argument("--concurrency", type=int, default=64)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    p = make_pki(tmp / "pki")
    with dev_instance(p, tmp / "db.sqlite") as instance, http_target() as target:
        store = instance.state.store
        text = config_text(instance.url, p, LOOPBACK_HTTP).replace(
            "poll_interval_s = 0.05", f"poll_interval_s = {args.poll}"
        )
        text = text.replace("max_concurrent_probes = 16", f"max_concurrent_probes = {args.concurrency}")
        config = trusted(text, tmp / "c.toml")
        loop = asyncio.new_event_loop()
        stop = asyncio.Event()

        def appliance() -> None:
            asyncio.set_event_loop(loop)
            loop.run_until_complete(
                run_appliance(
                    config,
                    state_dir=tmp,
                    audit=MemoryAudit(),
                    credentials=NoCredentials(),
                    stop=stop,
                    seal_key=bytes(32),
                    limits=fast_limits(concurrent_probes=args.concurrency),
                )
            )

        thread = threading.Thread(target=appliance, daemon=True)
        thread.start()
        time.sleep(0.5)
        latencies = []
        for _ in range(args.latency_runs):
            before = len(inputs(store))
            t0 = time.perf_counter()
            store.enqueue([{"agent": AGENT, "topic": "RESTProbe", "payload": params(url=f"{target}/hello")}])
            while len(inputs(store)) == before:
                time.sleep(0.002)
            latencies.append(time.perf_counter() - t0)
        before = len(inputs(store))
        t0 = time.perf_counter()
        store.enqueue(
            [
                {"agent": AGENT, "topic": "RESTProbe", "payload": params(url=f"{target}/hello")}
                for _ in range(args.jobs)
            ]
        )
        while len(inputs(store)) < before + args.jobs:
            time.sleep(0.01)
        elapsed = time.perf_counter() - t0
        loop.call_soon_threadsafe(stop.set)
        thread.join(30)
    print(f"poll_interval_s={args.poll} concurrency={args.concurrency}")
    print(
        f"enqueue→result latency: median {statistics.median(latencies) * 1000:.1f} ms over {len(latencies)} "
        f"(min {min(latencies) * 1000:.1f}, max {max(latencies) * 1000:.1f})"
    )
    print(f"{args.jobs} HTTP jobs: {elapsed:.2f} s, {args.jobs / elapsed:.0f} jobs/s")


if __name__ == "__main__":
    main()
