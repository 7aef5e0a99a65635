"""Group 7, the audit log: entries/s sustained; `audit verify` of 1,000,000 entries, time and peak RSS.

The verify runs in its own process, so its peak RSS is its own:

    python -m tests.bench.part_audit verify DIR      # DIR written by this part; prints the verdict
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from hardening.audit import AuditLog, AuditOptions, verify_log
from hardening.audit.seal import export_verification_key, parse_verification_key
from tests.bench.common import Row, Sizes, median

GROUP = "7 audit"
ROWS = ("entries/s sustained (sealed, default group commit)", "verify time", "verify peak RSS")


def fields(i: int) -> dict[str, object]:
    """A probe.finished entry of the usual size, distinct per ``i``."""
    return {
        "job": f"{i:032x}",
        "topic": "SSHCommand",
        "target": f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}",
        "port": 22,
        "credential": "linux-ro",
        "result_code": 0,
        "bytes_in": 120,
        "bytes_out": 4096,
        "duration_ms": 42.5,
        "result_sha256": f"{i:064x}",
    }


def _write(directory: Path, entries: int) -> float:
    audit = AuditLog(directory, AuditOptions())
    start = time.perf_counter()
    for i in range(entries):
        audit.record("probe.finished", fields(i))
    audit.close()
    took = time.perf_counter() - start
    (directory.parent / "seal-verify.key").write_bytes(export_verification_key(directory))
    return entries / took


def _verify(directory: Path) -> tuple[float, float]:
    """Seconds and peak RSS (MiB) of the verify in its own process (wait4 gives its own peak)."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.bench.part_audit", "verify", str(directory)], stdout=subprocess.PIPE
    )
    _, status, usage = os.wait4(proc.pid, 0)
    took = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    out = proc.stdout.read().decode() if proc.stdout else ""
    if proc.returncode or not out.startswith("INTACT"):
        raise RuntimeError(f"audit verify failed: {out.strip()}")
    return took, usage.ru_maxrss / 1024


def run(sizes: Sizes) -> list[Row]:
    rate_entries = sizes.pick(2_000, 200_000)
    rates = [_write(sizes.work / f"rate-{i}" / "audit", rate_entries) for i in range(sizes.runs)]
    big = sizes.pick(5_000, 1_000_000)
    log = sizes.work / "big" / "audit"
    _write(log, big)
    verifies = [_verify(log) for _ in range(min(sizes.runs, 3))]
    n = f"{big:,} entries"
    return [
        Row(GROUP, ROWS[0], median(rates), "entries/s", f"{rate_entries:,} entries per run", runs=len(rates)),
        Row(GROUP, ROWS[1], median([t for t, _ in verifies]), "s", n, runs=len(verifies)),
        Row(GROUP, ROWS[2], median([m for _, m in verifies]), "MiB", n, runs=len(verifies)),
    ]


def verify(directory: Path) -> int:
    """The child of ``_verify``: stream the whole log, check chain and seals, print the verdict."""
    seal_file = directory.parent / "seal-verify.key"
    seal_key = parse_verification_key(seal_file.read_bytes()) if seal_file.exists() else None
    report = verify_log(directory, seal_key=seal_key, split=True)  # as `midbox audit verify` does
    print(report.line())
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "verify":
        sys.exit("usage: python -m tests.bench.part_audit verify DIR (a log this part wrote)")
    sys.exit(verify(Path(sys.argv[2])))
