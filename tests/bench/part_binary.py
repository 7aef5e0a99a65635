"""Group 1, the frozen binary: size; cold start of ``--version``; ``run`` to its first answered job;
idle RSS; RSS after 1,000 mixed jobs (HTTP, SSH, SNMP v2c and v3, TCP); RSS at 64 and 500 probes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from devinstance.sshd import SshServer, run_sshd
from tests.bench.common import ENV, Row, Sizes, median, rss_anon_mib, rss_mib, timed, tool
from tests.bench.part_http import python_target
from tests.bench.rig import Appliance, Peers, Rig, http_job, mixed_jobs, rig
from tests.daemons import SnmpServer, run_snmpd

GROUP = "1 binary"
ROWS = (
    "size",
    "cold start, --version",
    "run to first answered job",
    "idle RSS after 60 s with no jobs",
    "RSS after 1,000 mixed jobs",
    "RSS at 64 concurrent probes",
    "RSS at 500 concurrent probes",
    "idle private memory (RssAnon) at the same moment",
)
POLL_S = 1.0  # not the figure here; a shorter wait for each phase


@contextmanager
def peers(work: Path) -> Iterator[Peers]:
    with ExitStack() as stack:
        base = stack.enter_context(python_target())
        ssh: SshServer | None = None
        if os.geteuid() == 0 and tool("sshd"):
            ssh = stack.enter_context(run_sshd(work / "sshd", user=f"midbox-bench-{os.getpid()}"))
        snmp: SnmpServer | None = stack.enter_context(run_snmpd(work / "snmpd")) if tool("snmpd") else None
        yield Peers(http=base, ssh=ssh, snmp=snmp)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # bound, never listening: refused


def _peak_while(app: Appliance, r: Rig, ids: list[str], timeout: float) -> float:
    peak, pending, start = 0.0, list(ids), time.monotonic()
    while pending:
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"{len(pending)} of {len(ids)} slow jobs unanswered")
        peak = max(peak, rss_mib(app.proc.pid))
        time.sleep(0.1)
        done = r.answered(pending)
        pending = [i for i in pending if i not in done]
    return peak


def _cold_start(exe: str, runs: int, work: Path) -> Row:
    """hyperfine's median (no shell, no warm-up: each run unpacks afresh), else our own timing."""
    hyperfine = tool("hyperfine")
    if hyperfine is None:
        took = [
            timed(lambda: subprocess.run([exe, "--version"], check=True, capture_output=True))
            for _ in range(runs)
        ]
        return Row(GROUP, ROWS[1], median(took) * 1000, "ms", "timed here (install hyperfine)", runs=runs)
    out = work / "hyperfine.json"
    subprocess.run([hyperfine, "-N", "--runs", str(runs), "--export-json", str(out), f"{exe} --version"],
                   check=True, capture_output=True, env=ENV)  # fmt: skip
    result = json.loads(out.read_text())["results"][0]
    return Row(GROUP, ROWS[1], result["median"] * 1000, "ms", "hyperfine -N, no warm-up", runs=runs)


def run(sizes: Sizes) -> Iterator[Row]:
    binary = sizes.binary
    if binary is None or not binary.exists():
        yield from (
            Row(GROUP, name, na="n/a: build first (python build/build), or pass --binary PATH")
            for name in ROWS
        )
        return
    exe = str(binary.resolve())
    yield Row(GROUP, ROWS[0], binary.stat().st_size / 2**20, "MiB", binary.name, runs=1)
    yield _cold_start(exe, max(sizes.runs, sizes.pick(2, 10)), sizes.work)
    with peers(sizes.work) as p, rig(sizes.work, [exe], p) as r:
        firsts = []
        for _ in range(sizes.runs):
            [hb] = r.enqueue("mid.server.edge-01", [{"topic": "HeartbeatProbe", "priority": "0"}])
            t0 = time.perf_counter()
            app = r.start("edge-01", poll_s=POLL_S)
            r.wait([hb], timeout=60, tick=0.005)
            firsts.append(time.perf_counter() - t0)
            r.stop(app)
        yield Row(GROUP, ROWS[2], median(firsts) * 1000, "ms", "a HeartbeatProbe queued before exec, mTLS",
                        runs=len(firsts))  # fmt: skip
        app = r.start("edge-01", poll_s=POLL_S)
        # up (a heartbeat answered) without running a probe: an idle appliance has loaded none
        r.wait(r.enqueue(app.agent, [{"topic": "HeartbeatProbe", "priority": "0"}]), timeout=60)
        idle_s = sizes.pickf(3, 60)
        time.sleep(idle_s)
        yield Row(
            GROUP,
            ROWS[3],
            rss_mib(app.proc.pid),
            "MiB",
            f"a heartbeat answered, then {idle_s:.0f} s idle",
            runs=1,
        )
        yield Row(
            GROUP,
            ROWS[7],
            rss_anon_mib(app.proc.pid),
            "MiB",
            "the heap and copied-on-write pages; the rest of the RSS are file pages the kernel can reclaim",
            runs=1,
        )
        count = sizes.pick(25, 1000)
        jobs = mixed_jobs(p, count, _closed_port())
        kinds = sorted({j["topic"] for j in jobs} - {"SNMP"}) + (["SNMP v2c and v3"] if p.snmp else [])
        r.wait(r.enqueue(app.agent, jobs), timeout=sizes.pickf(60, 300))
        yield Row(GROUP, ROWS[4], rss_mib(app.proc.pid), "MiB", f"{count:,} jobs: {', '.join(kinds)}", runs=1)
        r.stop(app)
        for n, name in ((64, ROWS[5]), (500, ROWS[6])):
            n_jobs = sizes.pick(n // 8, n)
            app = r.start("edge-01", poll_s=POLL_S, concurrency=n)
            r.wait(r.enqueue(app.agent, [http_job(p)]), timeout=60)
            hold_ms = sizes.pick(1000, 3000)
            ids = r.enqueue(app.agent, [http_job(p, f"/work?ms={hold_ms}")] * n_jobs)
            peak = _peak_while(app, r, ids, timeout=120)
            yield Row(GROUP, name, peak, "MiB", f"peak while {n_jobs} HTTP jobs of {hold_ms} ms run, "
                            f"max_concurrent_probes {n}", runs=1)  # fmt: skip
            r.stop(app)
