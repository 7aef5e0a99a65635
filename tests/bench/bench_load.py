"""Load benchmark (not part of the test run): N queued jobs drain; peak RSS, jobs/s, heartbeat latency.

    python -m tests.bench.bench_load [--jobs 10000] [--concurrency 64]

The development instance, the HTTP target and the appliance each run as their own process, over real
mTLS on loopback; the appliance runs under /usr/bin/time -v for its peak RSS.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from devinstance.store import Store
from tests.bench.instance import start_instance
from tests.helpers import AGENT, LOOPBACK_HTTP, config_text, make_pki, params


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=10_000)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--profile", type=Path, help="write a cProfile of the appliance here")
    ap.add_argument(
        "--unlimited",
        action="store_true",
        help="lift the per-target rate limit (default 10/s), so the jobs measure the appliance, not the bucket",
    )
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    inst_dir = tmp / "instance"
    p = make_pki(inst_dir / "pki")
    # make_pki wrote the CA and server certificate where `serve` looks for them (--dir/pki).
    instance, url = start_instance(inst_dir)
    target = subprocess.Popen(
        [sys.executable, "-m", "tests.support.target_main"], stdout=subprocess.PIPE, text=True
    )
    target_url = target.stdout.readline().strip()  # type: ignore[union-attr]
    store = Store(inst_dir / "instance.db")
    store.enqueue(
        [
            {"agent": AGENT, "topic": "RESTProbe", "payload": params(url=f"{target_url}/hello")}
            for _ in range(args.jobs)
        ]
    )
    # The real thing: a config signed with the CLI, `midbox run` with its audit log and credential store.
    config = tmp / "c.toml"
    rule = LOOPBACK_HTTP + (
        "rate_per_s = 10000\nburst = 100000\nmax_concurrent = 1024\n" if args.unlimited else ""
    )
    config.write_text(
        config_text(url, p, rule)
        .replace("poll_interval_s = 0.05", "poll_interval_s = 1")
        .replace(
            "max_concurrent_probes = 16",
            f"max_concurrent_probes = {args.concurrency}"
            + (
                "\ntarget_rate_per_s = 10000\ntarget_burst = 100000\ntarget_concurrency = 1024"
                if args.unlimited
                else ""
            ),
        )
    )
    state = tmp / "state"
    midbox = [sys.executable, "-m", "appliance"]
    for cmd in (
        ["keygen", "--out", str(tmp / "admin"), "--name", "admin", "--no-passphrase"],
        ["trust", "init", "--state-dir", str(state), "--pubkey", str(tmp / "admin" / "admin.pub")],
        ["config", "sign", str(config), "--key", str(tmp / "admin" / "admin.key")],
    ):
        subprocess.run([*midbox, *cmd], check=True, capture_output=True)
    t0 = time.perf_counter()
    appliance = subprocess.Popen(
        [
            "/usr/bin/time",
            "-v",
            *(
                [sys.executable, "-m", "cProfile", "-o", str(args.profile), "-m", "appliance"]
                if args.profile
                else midbox
            ),
            "run",
            "-q",
            "--config",
            str(config),
            "--state-dir",
            str(state),
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    query = "queue=input^topic!=queue.processing"
    hb_latency = None
    while True:
        done = len(store.query("ecc_queue", query, fields=["sys_id"]))
        if hb_latency is None and done >= args.jobs // 2:
            [hb] = store.enqueue([{"agent": AGENT, "topic": "HeartbeatProbe", "priority": "0"}])
            hb_t0 = time.perf_counter()
            while not store.query("ecc_queue", f"response_to={hb}", fields=["sys_id"]):
                time.sleep(0.01)
            hb_latency = time.perf_counter() - hb_t0
        if done >= args.jobs + 1:
            break
        time.sleep(0.1)
    elapsed = time.perf_counter() - t0
    # /usr/bin/time does not pass signals on: stop the appliance itself, as systemd would.
    children = Path(f"/proc/{appliance.pid}/task/{appliance.pid}/children").read_text().split()
    for child in children:
        os.kill(int(child), signal.SIGTERM)
    _, err = appliance.communicate(timeout=60)
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", err)
    for proc in (instance, target):
        proc.terminate()
        proc.wait(10)
    print(
        f"{args.jobs} jobs, concurrency {args.concurrency}: {elapsed:.1f} s (incl. start-up), {args.jobs / elapsed:.0f} jobs/s"
    )
    cpu = sum(float(m) for m in re.findall(r"(?:User|System) time \(seconds\): ([\d.]+)", err))
    print(f"appliance CPU: {cpu:.1f} s ({cpu / args.jobs * 1000:.2f} ms per job)")
    print(f"appliance peak RSS: {int(rss.group(1)) / 1024 if rss else float('nan'):.1f} MiB")
    print(
        f"HeartbeatProbe answered while saturated in {hb_latency * 1000:.0f} ms"
        if hb_latency
        else "no heartbeat"
    )


if __name__ == "__main__":
    main()
