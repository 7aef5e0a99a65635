"""build/smoke: run a frozen binary through a list of checks, each a command and what it must print.

    build/smoke [BINARY]      BINARY defaults to dist/midbox-<os>-<arch>

To extend it, add a Check to CHECKS (or a function returning checks that need files, like
_checks_with_state below). Each check runs the binary with an empty environment except PATH and
a temp state dir, and a timeout, so a check cannot touch the host's real state.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from midbox_build.common import DIST, BuildError, host_target

TIMEOUT_S = 30.0
HELP_WORKERS = 4


@dataclass(frozen=True)
class Check:
    name: str
    args: tuple[str, ...]
    exit_code: int = 0
    stdout_re: str = ""  # must match stdout (re.search)
    stderr_re: str = ""


CHECKS: tuple[Check, ...] = (
    Check("version", ("--version",), 0, r"^midbox \d+\.\d+\.\d+ \(([0-9a-f]{40}|source)\)\n$"),
    Check("no command is a usage error", (), 2),
    Check("unknown command is a usage error", ("no-such-command",), 2, "", r"invalid choice"),
)


def _checks_with_state(state: Path) -> tuple[Check, ...]:
    # Checks that need files (a signed config, a dev instance) go here; state is a fresh temp dir.
    del state
    return ()


@dataclass(frozen=True)
class Outcome:
    check: Check
    ok: bool
    detail: str
    seconds: float
    stdout: str = ""


def run_check(binary: Path, check: Check, state: Path, columns: int | None = None) -> Outcome:
    env = {"PATH": os.defpath, "MIDBOX_STATE_DIR": str(state), "LC_ALL": "C.UTF-8"}
    if columns is not None:  # wide enough that argparse never wraps a command name
        env["COLUMNS"] = str(columns)
    if sys.platform == "win32":  # Python on Windows cannot start without these
        env.update({k: os.environ[k] for k in ("SYSTEMROOT", "TEMP", "TMP") if k in os.environ})
    started = time.monotonic()
    try:
        proc = subprocess.run(
            [str(binary), *check.args],
            env=env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        return Outcome(check, False, f"timed out after {TIMEOUT_S:.0f}s", time.monotonic() - started)
    took = time.monotonic() - started
    problems = []
    if proc.returncode != check.exit_code:
        problems.append(f"exit {proc.returncode}, expected {check.exit_code}")
    if check.stdout_re and not re.search(check.stdout_re, proc.stdout, re.M):
        problems.append(f"stdout {proc.stdout[:200]!r} does not match {check.stdout_re!r}")
    if check.stderr_re and not re.search(check.stderr_re, proc.stderr, re.M):
        problems.append(f"stderr {proc.stderr[:200]!r} does not match {check.stderr_re!r}")
    if "Traceback (most recent call last)" in proc.stderr:
        problems.append("printed a traceback")
    return Outcome(check, not problems, "; ".join(problems), took, proc.stdout)


def subcommands(help_text: str) -> list[str]:
    """The command names argparse lists under "positional arguments:" (its metavar line, then one
    name per line indented four spaces; wrapped help lines are indented further)."""
    names: list[str] = []
    section = False
    for line in help_text.splitlines():
        if not line.startswith(" "):
            section = line.startswith("positional arguments")
            continue
        if section and re.match(r"^    [a-z][a-z0-9-]*(\s|$)", line):
            names.append(line.split()[0])
    return names


def help_outcomes(binary: Path, state: Path) -> list[Outcome]:
    """``--help`` of the binary and of every command and leaf under it must exit 0 without a traceback
    (argparse %-formats help strings, so one stray % crashes a whole command's help).

    Each help runs once, and one level of the tree runs in parallel: under Wine every start of the
    .exe costs seconds, and a serial walk that ran each help twice took about 6 minutes of CI."""
    out: list[Outcome] = []
    level: list[tuple[str, ...]] = [()]
    depth = 0
    with ThreadPoolExecutor(max_workers=HELP_WORKERS) as pool:
        while level and depth <= 4:  # the tree is two levels deep; the bound only stops a runaway
            checks = [Check(" ".join(("help", *p)), (*p, "--help"), 0, r"usage: midbox") for p in level]
            done = list(pool.map(lambda c: run_check(binary, c, state, columns=200), checks))
            out.extend(done)
            pairs = zip(checks, done, strict=True)
            level = [(*c.args[:-1], n) for c, o in pairs for n in subcommands(o.stdout)]
            depth += 1
    return out


def run_all(binary: Path, extra: Callable[[Path], tuple[Check, ...]] = _checks_with_state) -> list[Outcome]:
    with tempfile.TemporaryDirectory(prefix="midbox-smoke-") as tmp:
        state = Path(tmp) / "state"
        state.mkdir(mode=0o700)
        return [
            *(run_check(binary, c, state) for c in (*CHECKS, *extra(Path(tmp)))),
            *help_outcomes(binary, state),
        ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="build/smoke", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("binary", type=Path, nargs="?")
    args = p.parse_args(argv)
    try:
        binary = args.binary or DIST / host_target().binary_name
    except BuildError as e:
        print(f"smoke: {e}", file=sys.stderr)
        return 2
    if not binary.is_file():
        print(f"smoke: {binary} does not exist: run build/build first", file=sys.stderr)
        return 2
    outcomes = run_all(binary.resolve())
    for o in outcomes:
        status = "ok  " if o.ok else "FAIL"
        print(f"{status} {o.check.name} ({o.seconds * 1000:.0f} ms){': ' + o.detail if o.detail else ''}")
    failed = sum(not o.ok for o in outcomes)
    print(f"{len(outcomes) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
