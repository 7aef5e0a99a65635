"""The benchmark command: every figure of issue 19 in one table, against peers it starts on loopback.

    python -m tests.bench.run [--quick] [--json PATH] [--binary PATH] [--only PART ...] [--no-write]
    python tests/bench/run.py ...

Each part runs in its own process group with a time limit; when it ends, fails, times out or the run
is interrupted (Ctrl-C), the group is terminated, so every daemon it started goes with it. Each
figure is the median of several runs; each ratio compares midbox with the named tool measured in the
same run. The table is printed and written to docs/benchmarks.md (``--no-write`` leaves it), and
``--json PATH`` writes every row as JSON. ``--quick`` runs every part at tiny sizes: it checks the
harness works (CI), its figures mean nothing. Run as root (the SSH part creates sshd's login user).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

if __package__ in (None, ""):  # `python tests/bench/run.py`: import the repository, not this folder
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.bench.common import Row, Sizes
from tests.bench.report import machine, markdown, write_doc

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_BINARY = ROOT / "dist" / "midbox-linux-x86_64"
# name: (module, limit in seconds for the full run, for --quick)
PARTS: dict[str, tuple[str, float, float]] = {
    "binary": ("tests.bench.part_binary", 360, 90),
    "queue": ("tests.bench.part_queue", 300, 60),
    "snmp": ("tests.bench.part_snmp", 240, 40),
    "ssh": ("tests.bench.part_ssh", 180, 40),
    "http": ("tests.bench.part_http", 240, 40),
    "tcp": ("tests.bench.part_tcp", 180, 30),
    "audit": ("tests.bench.part_audit", 240, 30),
    "scaling": ("tests.bench.part_scaling", 480, 60),
    "policy": ("tests.bench.part_policy", 180, 40),
    "push": ("tests.bench.part_push", 240, 40),
    "size": ("tests.bench.part_size", 60, 30),
}


def run_part(name: str, sizes: Sizes) -> list[Row]:
    """One part in this process (the pytest smoke test, and the child of ``run_isolated``)."""
    return list(rows_of(name, sizes))


def rows_of(name: str, sizes: Sizes) -> Iterator[Row]:
    module = importlib.import_module(PARTS[name][0])
    rows: Iterable[Row] = module.run(sizes)  # a list, or rows as they are measured
    yield from rows


def expected(name: str) -> list[tuple[str, str]]:
    module = importlib.import_module(PARTS[name][0])
    return [(module.GROUP, row) for row in module.ROWS]


def run_isolated(name: str, sizes: Sizes, limit: float) -> tuple[list[Row], str]:
    """The part in a child process group; its rows, or none and why it gave none."""
    out = sizes.work / f"{name}.json"
    cmd = [
        sys.executable,
        "-m",
        "tests.bench.run",
        "--part",
        name,
        "--emit",
        str(out),
        "--work",
        str(sizes.work),
    ]
    cmd += ["--quick"] if sizes.quick else []
    cmd += ["--runs", str(sizes.runs)]
    cmd += ["--binary", str(sizes.binary)] if sizes.binary else []
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, start_new_session=True)
    why = ""
    try:
        code = proc.wait(limit)
        why = f"part failed (exit {code}; its output above says why)" if code else ""
    except subprocess.TimeoutExpired:
        why = f"timed out after {limit:.0f} s"
    finally:
        _stop_group(proc)
    lines = out.read_text(encoding="utf-8").splitlines() if out.exists() else []
    rows = [Row(**json.loads(line)) for line in lines if line.strip()]
    return rows, why


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the whole group (the part turns it into cleanup), SIGKILL to whatever is left."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(20)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5)


def complete(name: str, rows: list[Row], why: str) -> list[Row]:
    """Every expected row, in order: a row the part did not give says why instead of vanishing."""
    have = {(r.group, r.name): r for r in rows}
    out = [
        have.pop(key, None) or Row(key[0], key[1], na=f"n/a: {why or 'not measured'}")
        for key in expected(name)
    ]
    return out + list(have.values())


def reused(path: Path, fresh: list[Row], parts: list[str]) -> list[Row]:
    """All rows in the usual order: this run's parts fresh, every other part's from an earlier run."""
    earlier = [Row(**r) for r in json.loads(path.read_text(encoding="utf-8"))["rows"]]
    out: list[Row] = []
    for name in PARTS:
        groups = {g for g, _ in expected(name)}
        out += [r for r in (fresh if name in parts else earlier) if r.group in groups]
    return out


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _child(args: argparse.Namespace, sizes: Sizes) -> int:
    # SIGTERM from the parent (time limit, Ctrl-C) unwinds the part's finally blocks, stopping its peers.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    # One JSON line per row as soon as it is measured: a part that fails or times out later keeps them.
    with Path(args.emit).open("a", encoding="utf-8") as out:
        for row in rows_of(args.part, sizes):
            out.write(json.dumps(row.as_json()) + "\n")
            out.flush()
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.bench.run", description=__doc__.splitlines()[0])
    ap.add_argument(
        "--quick", action="store_true", help="tiny sizes: check the harness (CI), not the figures"
    )
    ap.add_argument("--json", type=Path, help="also write the rows as JSON here")
    ap.add_argument(
        "--binary", type=Path, help=f"the frozen binary (default {DEFAULT_BINARY.relative_to(ROOT)})"
    )
    ap.add_argument("--only", nargs="+", choices=sorted(PARTS), help="run these parts only")
    ap.add_argument("--runs", type=int, help="runs per figure (default 3, --quick 1)")
    ap.add_argument("--no-write", action="store_true", help="do not write docs/benchmarks.md")
    ap.add_argument(
        "--reuse",
        type=Path,
        help="with --only: take the other parts' rows from this earlier --json file (and write the doc)",
    )
    ap.add_argument(
        "--strict", action="store_true", help="exit 1 if any row is n/a (CI: every tool is installed)"
    )
    ap.add_argument("--part", choices=sorted(PARTS), help=argparse.SUPPRESS)
    ap.add_argument("--emit", help=argparse.SUPPRESS)
    ap.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    binary = args.binary or (DEFAULT_BINARY if DEFAULT_BINARY.exists() else None)
    runs = args.runs or (1 if args.quick else 3)
    if args.part:
        return _child(args, Sizes(args.quick, runs, binary, args.work))
    if os.geteuid() != 0:
        print(
            "warning: not root: the SSH rows need root (sshd's login user); they will say n/a",
            file=sys.stderr,
        )
    # Ctrl-C (even where a shell started us with SIGINT ignored) and SIGTERM both stop the running
    # part's whole process group through run_isolated's finally.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    parts = args.only or list(PARTS)
    started = time.monotonic()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="midbox-bench-") as tmp:
        for name in parts:
            limit = PARTS[name][2 if args.quick else 1]
            work = Path(tmp) / name
            work.mkdir()
            print(f"== {name} (limit {limit:.0f} s)", file=sys.stderr, flush=True)
            t0 = time.monotonic()
            got, why = run_isolated(name, Sizes(args.quick, runs, binary, work), limit)
            rows += complete(name, got, why)
            print(f"   {name}: {time.monotonic() - t0:.0f} s{f' ({why})' if why else ''}", file=sys.stderr)
    took = time.monotonic() - started
    note = ""
    if args.reuse:
        rows = reused(args.reuse, rows, parts)
        earlier = json.loads(args.reuse.read_text(encoding="utf-8")).get("machine", {})
        note = f"the rows of {', '.join(parts)} from this run, the others from a run of {earlier.get('date', 'earlier')}"
    info = machine()
    table = markdown(rows)
    print(table)
    print(f"\n{len(rows)} rows in {took:.0f} s on {info['cpu']} ({info['cores']} cores)")
    if args.json:
        args.json.write_text(json.dumps({"machine": info, "quick": args.quick, "seconds": round(took),
                                         "rows": [r.as_json() for r in rows]}, indent=1), encoding="utf-8")  # fmt: skip
    if not (args.no_write or (args.only and not args.reuse) or args.quick):
        write_doc(ROOT / "docs" / "benchmarks.md", table, info, quick=args.quick, runs=runs, note=note)
    unmeasured = [r for r in rows if r.na]
    if args.strict and unmeasured:
        print(f"{len(unmeasured)} row(s) not measured; install what they name, or see the part's output above",
              file=sys.stderr)  # fmt: skip
        return 1
    return 0


def _main() -> int:
    try:
        return main()
    except KeyboardInterrupt:
        print("interrupted: the running part and everything it started were stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(_main())
