"""Benchmark of the audit log (not part of the test run).

    python tests/bench/bench_audit.py write  DIR [--entries N] [--max-pending M] [--interval-ms T]
    python tests/bench/bench_audit.py verify DIR
    /usr/bin/time -v python tests/bench/bench_audit.py verify DIR     # peak memory: "Maximum resident"

``write`` appends N probe.finished entries through AuditLog (group commit as configured) and prints
entries/s and the cost per job (a job writes 5 entries: job.claimed, credential.used, probe.started,
probe.finished, result.posted). Sealing is on (the default); the seal verification key is saved
beside DIR. ``verify`` streams the whole log, checks chain and seals, and prints the verdict and time.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from hardening.audit import AuditLog, AuditOptions, verify_log
from hardening.audit.seal import export_verification_key, parse_verification_key

ENTRIES_PER_JOB = 5


def fields(i: int) -> dict[str, object]:
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


def write(directory: Path, entries: int, max_pending: int, interval_ms: float) -> None:
    options = AuditOptions(fsync_max_pending=max_pending, fsync_interval_s=interval_ms / 1000)
    audit = AuditLog(directory, options)
    start = time.perf_counter()
    for i in range(entries):
        audit.record("probe.finished", fields(i))
    audit.close()
    took = time.perf_counter() - start
    (directory.parent / "seal-verify.key").write_bytes(export_verification_key(directory))
    rate = entries / took
    print(
        f"wrote {entries} entries in {took:.2f} s: {rate:,.0f} entries/s "
        f"(max_pending={max_pending}, interval={interval_ms} ms); "
        f"{ENTRIES_PER_JOB * 1e6 / rate:.0f} us of audit per job"
    )


def verify(directory: Path) -> None:
    seal_file = directory.parent / "seal-verify.key"
    seal_key = parse_verification_key(seal_file.read_bytes()) if seal_file.exists() else None
    start = time.perf_counter()
    report = verify_log(directory, seal_key=seal_key)
    took = time.perf_counter() - start
    print(f"{report.line()} in {took:.2f} s ({report.entries / took:,.0f} entries/s)")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["write", "verify"])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--max-pending", type=int, default=512)
    parser.add_argument("--interval-ms", type=float, default=50.0)
    args = parser.parse_args()
    if args.mode == "write":
        write(args.directory, args.entries, args.max_pending, args.interval_ms)
    else:
        verify(args.directory)
    return 0


if __name__ == "__main__":
    sys.exit(main())
