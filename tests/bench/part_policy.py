"""Group 9, the policy decision per job: what the dispatcher and the probe add for policy (the job's
ask and ``Policy.check`` through a scoped policy), the first time a payload is seen and when it was
seen before (discovery sends one payload to many targets); the rate limiter's lease; a trivial job's
appliance CPU, measured end to end on a source appliance; what its audit entries and its journal and
outbox writes cost; and the share of the three in that job.

The config has 50 rules, each with scopes (30 command templates, 8 OID subtrees, 4 paths), and the
matching rule is last (the worst case)."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from appliance.asks import AskCache, prepared
from appliance.interfaces import Outcome
from appliance.probes.base import Job
from appliance.queue.durable import OutboxCloser, open_durable
from appliance.queue.records import OutputRecord
from appliance.ratelimit import Limiter, RateSettings, RuleLimits
from hardening.audit import AuditLog, AuditOptions
from hardening.audit._files import audit_dir, iter_lines
from hardening.policy import AllowRule, Policy, PortRange
from hardening.scopes import CommandScope, PathScope, Scopes
from tests.bench.common import Row, Sizes, median
from tests.bench.part_audit import fields
from tests.bench.part_http import python_target
from tests.bench.rig import Peers, http_job, rig, source_midbox

GROUP = "9 policy"
SHM = Path("/dev/shm")
RULES = 50
COMMANDS = (
    *tuple(f"cmd{i} -x {{a:word}} {{b:int}}" for i in range(28)),
    "uname -a",
    "ip -o addr show dev {i:iface}",
)
OIDS = tuple((1, 3, 6, 1, 2, 1, n) for n in (1, 2, 4, 25, 31, 47, 17, 4))
JOBS = {
    "SSH command": Job("0" * 32, "SSHCommand", "ip -o addr show dev ${iface}", "192.0.2.7", "a",
                       parameters=(("iface", "eth0"), ("port", "22"))),
    "SNMP walks and a table": Job("0" * 32, "SNMP", "snmp", "192.0.2.7", "a", parameters=(
        ("oid_spec_list", "walk system\nwalk interfaces\ntable ifXTable ifName,ifAlias\nget sysDescr.0"),)),
    "SNMP GET": Job("0" * 32, "SNMP", "snmp", "192.0.2.7", "a", parameters=(("oid_spec_list", "get sysDescr.0"),)),
    "HTTP GET": Job("0" * 32, "RESTProbe", "http", "192.0.2.7", "a",
                    parameters=(("url", "https://192.0.2.7/redfish/v1/Systems/1"),)),
}  # fmt: skip
KIND = {"SSH command": ("ssh", 22), "SNMP walks and a table": ("snmp", 161), "SNMP GET": ("snmp", 161),
        "HTTP GET": ("http", 443)}  # fmt: skip
ROWS = (
    *(f"decision, {name}, {when}" for name in JOBS for when in ("first time", "payload seen before")),
    "rate limiter acquire + release",
    "appliance CPU per trivial job, end to end",
    "appliance CPU per trivial job, state on tmpfs (fsync costs nothing)",
    "decision's share of a trivial job (HTTP GET, first time)",
    "audit entries per trivial job",
    "audit entry written (sealed, default group commit)",
    "journal and outbox writes per trivial job",
    "of which the journal's (the entry in, the entry out)",
    "policy decision, audit and journal share of a trivial job",
    "the same with the outbox writes too",
    "journal and outbox writes per trivial job, 16 jobs at once",
)


def policy(rules: int = RULES) -> Policy:
    scopes = Scopes(
        commands=CommandScope.parse(COMMANDS),
        oids=OIDS,
        methods=frozenset({"GET", "HEAD"}),
        paths=PathScope.parse(("/redfish/v1/**", "/api/now/table/cmdb_ci", "/health", "/status/**")),
    )

    def rule(net: str, ports: tuple[PortRange, ...]) -> AllowRule:
        return AllowRule(networks=(ipaddress.ip_network(net),), hosts=(), probes=frozenset({"ssh", "snmp", "http"}),
                         ports=ports, credentials=("a",), scopes=scopes)  # fmt: skip

    common = (PortRange(22, 22), PortRange(161, 161), PortRange(443, 443))
    return Policy([*(rule(f"10.{i}.0.0/16", common) for i in range(1, rules)),
                   rule("192.0.2.0/24", (PortRange(1, 65535),))])  # fmt: skip


def decide(p: Policy, job: Job, kind: str, port: int, cache: AskCache | None = None) -> bool:
    """All the dispatcher and probe do for policy, the parse of the payload included."""
    ask = cache.prepared(job)[1] if cache else prepared(job)[1]
    return p.scoped(ask).check(probe=kind, address=ipaddress.ip_address(job.source), port=port).allowed


def per_call_us(fn: Callable[[], object], n: int, runs: int) -> float:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        samples.append((time.perf_counter() - start) / n * 1e6)
    return median(samples)


def _lease_us(n: int) -> float:
    async def go() -> float:
        unlimited = RuleLimits(rate_per_s=1e9, burst=10**6, concurrency=1000)
        limiter = Limiter(RateSettings(target_rate_per_s=1e9, target_burst=10**6, rules={1: unlimited}))
        start = time.perf_counter()
        for _ in range(n):
            lease = limiter.lease()
            await lease.acquire("192.0.2.7", 22, 1)
            lease.release(True)
        return (time.perf_counter() - start) / n * 1e6

    return asyncio.run(go())


def cpu_s(pid: int) -> float:
    """User plus system CPU of ``pid`` so far (/proc/PID/stat fields 14 and 15, in clock ticks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class TrivialJob:
    """What the end-to-end burst measured: CPU per job, audit entries per job, one answer's payload."""

    def __init__(self, cpu_ms: float, burst: int, audit_per_job: float, payload: str) -> None:
        self.cpu_ms, self.burst, self.audit_per_job, self.payload = cpu_ms, burst, audit_per_job, payload


def _audit_entries(state: Path) -> int:
    directory = audit_dir(state)
    return sum(1 for _ in iter_lines(directory, 1 << 20)) if directory.exists() else 0


def _trivial_job(sizes: Sizes, work: Path) -> TrivialJob:
    """Appliance CPU per HTTP GET job (dispatch, policy, probe, audit, journal, the queue's share),
    from a burst of them drained by one source appliance; the median of ``runs`` bursts. Also the
    audit entries the appliance wrote per job, and one answer's payload (the outbox entry's size)."""
    burst = sizes.pick(100, 2000)
    with python_target() as base, rig(work, source_midbox(), Peers(http=base)) as r:
        app = r.start("edge-01", poll_s=1.0, concurrency=64)
        warm = r.enqueue(app.agent, [http_job(r.peers)] * 20)
        r.wait(warm, timeout=60)  # up, and every module loaded
        [answer] = r.store.query("ecc_queue", f"queue=input^response_to={warm[0]}", fields=["payload"])
        state = r.work / "state-edge-01"
        samples, entries = [], 0
        for _ in range(sizes.runs):
            before, logged = cpu_s(app.proc.pid), _audit_entries(state)
            r.wait(r.enqueue(app.agent, [http_job(r.peers)] * burst), timeout=300, tick=0.02)
            samples.append((cpu_s(app.proc.pid) - before) / burst * 1000)
            entries += _audit_entries(state) - logged
    return TrivialJob(median(samples), burst, entries / (burst * sizes.runs), str(answer["payload"]))


def _audit_entry_us(n: int) -> float:
    """CPU (all threads of this process) per sealed audit entry, default group commit, close included."""
    with tempfile.TemporaryDirectory() as d:
        audit = AuditLog(Path(d) / "audit", AuditOptions())
        start = time.process_time()
        for i in range(n):
            audit.record("probe.finished", fields(i))
        audit.close()
        return (time.process_time() - start) / n * 1e6


def _durable_us(payload: str, n: int, threads: int = 1) -> tuple[float, float]:
    """CPU per job (journal's, outbox's) of the runner's journal and outbox work, in its order: the
    journal entry before the probe (after which the sent results waiting for a journal sync are
    released: outbox work), the result into the outbox, the journal entry out, and once the instance has
    the result the outbox entry handed to the closer (``OutboxCloser``); at the end one settle for what
    still waits. Sealed as the appliance seals them; fsync waits are not CPU. With ``threads``, that
    many jobs at once (the runner does this disk work in threads), sharing syncs: then only the total
    is measured (given as the journal's, the outbox's 0)."""
    key = os.urandom(32)
    with tempfile.TemporaryDirectory() as d:
        journal, outbox = open_durable(Path(d), key, n + 1)
        closer = OutboxCloser(journal, outbox)
        records = [_record(i) for i in range(n)]
        outcome = Outcome(payload, None, 3)
        spent_journal = [0.0]
        clock = time.thread_time

        def jobs(mine: list[OutputRecord]) -> None:
            for record in mine:
                start = clock()
                journal.add(record, 1)
                middle = clock()
                closer.release()
                outbox.add(record, outcome)
                before = clock()
                journal.remove(record.sys_id, durable=False)
                after = clock()
                closer.close(record.sys_id)
                spent_journal[0] += (middle - start) + (after - before)

        start = time.process_time()
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(jobs, [records[i::threads] for i in range(threads)]))
        closer.settle()
        spent = time.process_time() - start
        journal.close()
        outbox.close()
        if threads > 1:
            return spent / n * 1e6, 0.0
        return spent_journal[0] / n * 1e6, (spent - spent_journal[0]) / n * 1e6


def _record(i: int) -> OutputRecord:
    job = http_job(Peers(http="http://127.0.0.1:8080"))
    return OutputRecord(
        sys_id=f"{i:032x}", agent="mid.server.edge-01", topic=job["topic"], name="", source=job["source"],
        payload=job["payload"], state="processing", agent_correlator="", priority="2",
        sys_created_on="2026-12-01 00:00:00",
    )  # fmt: skip


def run(sizes: Sizes) -> Iterator[Row]:
    p = policy()
    n = sizes.pick(200, 5000)
    peer = f"{RULES} scoped rules, the matching one last; {n:,} decisions per run"
    first: dict[str, float] = {}
    for name, job in JOBS.items():
        kind, port = KIND[name]
        if not decide(p, job, kind, port):
            raise RuntimeError(f"the benchmark's policy refused its own {name} job: fix part_policy's rules")
        cache = AskCache()
        first[name] = per_call_us(lambda: decide(p, job, kind, port), n, sizes.runs)  # noqa: B023
        seen = per_call_us(lambda: decide(p, job, kind, port, cache), n, sizes.runs)  # noqa: B023
        yield Row(GROUP, f"decision, {name}, first time", first[name], "µs", peer, runs=sizes.runs)
        yield Row(GROUP, f"decision, {name}, payload seen before", seen, "µs", peer, runs=sizes.runs)
    leases = median([_lease_us(n) for _ in range(sizes.runs)])
    yield Row(GROUP, ROWS[-11], leases, "µs", f"{n:,} leases per run, caps out of the way", runs=sizes.runs)
    trivial = _trivial_job(sizes, sizes.work / "rig")
    job_ms = trivial.cpu_ms
    yield Row(GROUP, ROWS[-10], job_ms, "ms", f"{trivial.burst:,} RESTProbe GETs to a Python target per run, "
              "source appliance, /proc CPU time", runs=sizes.runs)  # fmt: skip
    if SHM.is_dir():
        with tempfile.TemporaryDirectory(dir=SHM) as shm:
            in_memory = _trivial_job(sizes, Path(shm) / "rig")
        yield Row(GROUP, ROWS[-9], in_memory.cpu_ms, "ms", "the same on a state directory in /dev/shm: the "
                  "difference is what durability (fsync) costs", runs=sizes.runs)  # fmt: skip
    else:
        yield Row(GROUP, ROWS[-9], na="n/a: no /dev/shm")
    decision = first["HTTP GET"]
    yield Row(GROUP, ROWS[-8], decision / (job_ms * 1000) * 100, "%", "the two rows above",
              versus=f"{decision:.3g} µs of {job_ms:.3g} ms", runs=sizes.runs)  # fmt: skip
    yield Row(GROUP, ROWS[-7], trivial.audit_per_job, "entries", "counted in the appliance's audit log over the bursts",
              runs=sizes.runs)  # fmt: skip
    m = sizes.pick(500, 20_000)
    entry = median([_audit_entry_us(m) for _ in range(sizes.runs)])
    yield Row(GROUP, ROWS[-6], entry, "µs", f"{m:,} probe.finished entries per run, CPU time",
              runs=sizes.runs)  # fmt: skip
    k = sizes.pick(100, 2000)
    split = [_durable_us(trivial.payload, k) for _ in range(sizes.runs)]
    durable = median([j + o for j, o in split])
    journal = median([j for j, _ in split])
    yield Row(GROUP, ROWS[-5], durable, "µs", f"{k:,} jobs per run, sealed, the runner's order, "
              f"a {len(trivial.payload):,}-byte answer; CPU time", runs=sizes.runs)  # fmt: skip
    yield Row(GROUP, ROWS[-4], journal, "µs", "the same runs, each call's thread CPU time", runs=sizes.runs)
    named = decision + trivial.audit_per_job * entry + journal
    yield Row(GROUP, ROWS[-3], named / (job_ms * 1000) * 100, "%", "decision + entries x entry + journal",
              versus=f"{named:.3g} µs of {job_ms:.3g} ms", runs=sizes.runs)  # fmt: skip
    together = decision + trivial.audit_per_job * entry + durable
    yield Row(GROUP, ROWS[-2], together / (job_ms * 1000) * 100, "%", "decision + entries x entry + journal and outbox",
              versus=f"{together:.3g} µs of {job_ms:.3g} ms", runs=sizes.runs)  # fmt: skip
    shared = median([_durable_us(trivial.payload, k * 4, threads=16)[0] for _ in range(sizes.runs)])
    yield Row(GROUP, ROWS[-1], shared, "µs", f"{k * 4:,} jobs per run in 16 threads, each in the runner's order; "
              "concurrent jobs share data syncs (group commit)", runs=sizes.runs)  # fmt: skip
