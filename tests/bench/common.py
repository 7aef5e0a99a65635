"""What every benchmark part shares: the row it reports, its sizes, medians, RSS and tool look-ups."""

from __future__ import annotations

import os
import resource
import shutil
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

# Tools are looked up here only, so a user's PATH cannot put another nmap or wrk in the table.
TOOL_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
ENV = {"PATH": TOOL_PATH, "MIBS": "", "LC_ALL": "C"}
# The Debian package that brings each tool, for the "n/a: install X" rows.
PACKAGES = {
    "snmpbulkwalk": "snmp",
    "snmpd": "snmpd",
    "sshd": "openssh-server",
    "ssh": "openssh-client",
    "nginx": "nginx",
    "wrk": "wrk",
    "ab": "apache2-utils",
    "nmap": "nmap",
    "snmpsim-command-responder": "snmpsim (pip, with pysmi)",
}


@dataclass(frozen=True)
class Row:
    """One line of the table: a figure (median of ``runs``), or ``na`` saying what to install."""

    group: str
    name: str
    value: float | None = None
    unit: str = ""
    peer: str = ""  # what it ran against
    ratio: float | None = None  # midbox / the named tool, both measured in the same run
    versus: str = ""  # what the ratio is against and its own figure
    runs: int = 0
    na: str = ""

    def as_json(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class Sizes:
    """How big each part runs: ``quick`` is the CI smoke run, the default is the published table."""

    quick: bool
    runs: int
    binary: Path | None
    work: Path

    def pick(self, quick: int, full: int) -> int:
        return quick if self.quick else full

    def pickf(self, quick: float, full: float) -> float:
        return quick if self.quick else full


def tool(name: str) -> str | None:
    return shutil.which(name, path=TOOL_PATH)


def install(what: str) -> str:
    """What a row says in place of a figure whose tool is missing."""
    return f"n/a: install {PACKAGES.get(what, what)}"


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def median(samples: list[float]) -> float:
    return statistics.median(samples)


def p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


def rss_mib(pid: int) -> float:
    """The largest resident set among ``pid`` and its descendants: a onefile binary runs Python as the
    bootloader's child, and ``/usr/bin/time -v`` (the figures before this command) reported that one."""
    total = 0.0
    for p in [pid, *descendants(pid)]:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total = max(total, int(line.split()[1]) / 1024)
        except OSError:
            continue
    return total


def rss_anon_mib(pid: int) -> float:
    """``RssAnon`` (private memory no file backs: the heap, copied-on-write pages) of the process
    ``rss_mib`` reads; what the kernel could not reclaim without swap."""
    best, anon = -1.0, 0.0
    for p in [pid, *descendants(pid)]:
        try:
            fields = dict(line.split(":", 1) for line in Path(f"/proc/{p}/status").read_text().splitlines())
        except (OSError, ValueError):
            continue
        rss = int(fields.get("VmRSS", "0 kB").split()[0])
        if rss > best:
            best, anon = rss, int(fields.get("RssAnon", "0 kB").split()[0]) / 1024
    return anon


def descendants(pid: int) -> list[int]:
    out: list[int] = []
    try:
        children = [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return out
    for child in children:
        out += [child, *descendants(child)]
    return out


def cpu_count() -> int:
    return len(os.sched_getaffinity(0))


@dataclass(frozen=True)
class CpuSplit:
    """Where the CPU of one timed step went: this process, its waited-for children, the rest."""

    own_s: float
    children_s: float
    machine_s: float  # every core's busy time (``/proc/stat``): this process, its children, peers, kernel

    @property
    def rest_s(self) -> float:
        return max(0.0, self.machine_s - self.own_s - self.children_s)


def cpu_split(fn: Callable[[], object]) -> tuple[float, CpuSplit]:
    """``fn``'s wall time and its CPU split. The rest of the machine is the peers' share only while
    nothing else runs, as on the benchmark's host between parts."""

    def now() -> tuple[float, float, float]:
        me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return me.ru_utime + me.ru_stime, kids.ru_utime + kids.ru_stime, _machine_busy_s()

    before = now()
    took = timed(fn)
    after = now()
    own, kids, machine = (b - a for a, b in zip(before, after, strict=True))
    return took, CpuSplit(own, kids, machine)


def _machine_busy_s() -> float:
    # The first line of /proc/stat sums every core: user nice system idle iowait irq softirq steal guest
    # guest_nice. Busy is user, nice, system, irq and softirq (steal is the hypervisor's, guest is
    # counted in user already).
    ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:8]]
    return sum(ticks[i] for i in (0, 1, 2, 5, 6)) / os.sysconf("SC_CLK_TCK")
