"""Longer fuzz runs: ``python -m tests.fuzz.run --target NAME --seconds N`` or ``--all --seconds N``.

Mutates the committed seeds of each target for N seconds. A crash (an exception other than the
parser's declared error, a post-condition failure, a hang past ``--hang-seconds`` or a MemoryError
under the ``--memory-mb`` address-space cap) is written to ``corpus/<target>/crash-<sha256[:12]>``
with its traceback printed; the pytest replay then fails on it until the parser is fixed.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import sys
import tempfile
import traceback
from pathlib import Path

from tests.fuzz import mutate
from tests.fuzz.targets import Targets

CORPUS = Path(__file__).parent / "corpus"


def load_seeds(corpus: Path, name: str) -> list[bytes]:
    d = corpus / name
    return [p.read_bytes() for p in sorted(d.iterdir()) if p.is_file()] if d.is_dir() else []


def _limit_memory(megabytes: int) -> None:
    try:
        import resource
    except ImportError:  # pragma: no cover - not POSIX
        return
    cap = megabytes * 1024 * 1024
    _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (cap if hard == resource.RLIM_INFINITY else min(cap, hard), hard))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Mutation-fuzz the midbox parsers from the committed corpus.")
    which = ap.add_mutually_exclusive_group(required=True)
    which.add_argument("--target", action="append", help="target name (repeatable)")
    which.add_argument("--all", action="store_true", help="every target, one after the other")
    which.add_argument("--list", action="store_true", help="list the targets and what each checks")
    ap.add_argument("--seconds", type=float, default=60.0, help="seconds per target (default 60)")
    ap.add_argument("--seed", type=int, default=None, help="random seed (default: random, printed)")
    ap.add_argument(
        "--hang-seconds", type=float, default=5.0, help="one execution longer than this is a hang"
    )
    ap.add_argument("--memory-mb", type=int, default=2048, help="address-space cap of this process")
    ap.add_argument("--corpus", type=Path, default=CORPUS, help="corpus directory (crashes are written here)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="midbox-fuzz-") as scratch:
        targets = Targets(Path(scratch)).all
        if args.list:
            for t in targets.values():
                print(f"{t.name:18} {t.checks}")
            return 0
        names = list(targets) if args.all else args.target
        unknown = [n for n in names if n not in targets]
        if unknown:
            ap.error(f"unknown target {unknown[0]!r}; --list shows them")
        _limit_memory(args.memory_mb)
        seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
        print(f"random seed {seed}; {args.seconds:g} s per target")
        crashed = 0
        for name in names:
            out = args.corpus / name

            def save(data: bytes, exc: BaseException, out: Path = out, name: str = name) -> None:
                out.mkdir(parents=True, exist_ok=True)
                path = out / f"crash-{hashlib.sha256(data).hexdigest()[:12]}"
                path.write_bytes(data)
                print(
                    f"\nCRASH in {name}: {type(exc).__name__}; input written to {path.name}", file=sys.stderr
                )
                traceback.print_exception(exc, file=sys.stderr)

            stats = mutate.run(
                targets[name].run,
                load_seeds(args.corpus, name),
                seconds=args.seconds,
                rng=random.Random(f"{seed}:{name}"),
                on_crash=save,
                hang_seconds=args.hang_seconds,
            )
            crashed += len(stats.crashes)
            print(
                f"{name:18} {stats.executions:9d} execs in {stats.seconds:6.1f} s = {stats.rate:8.0f}/s, "
                f"{len(stats.crashes)} crash(es)",
                flush=True,
            )
        return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main())
