"""Coverage-guided fuzzing of one target with atheris (libFuzzer), seeded from the committed corpus.

    python -m tests.fuzz.atheris_run TARGET [--scratch DIR] [-max_total_time=60] [other libFuzzer flags]

The blind mutation driver (``tests.fuzz.run``) and CI's bounded runs need nothing but the corpus;
this one follows coverage into the parsers' deeper branches. New inputs it finds go to a scratch
directory (not the committed corpus); a crash is written by libFuzzer as ``corpus/TARGET/crash-<sha1>``
(``-artifact_prefix=`` changes that): keep it there, beside a regression test.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

CORPUS = Path(__file__).resolve().parent / "corpus"


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1].startswith("-"):
        raise SystemExit(__doc__)
    name, flags = sys.argv[1], sys.argv[2:]
    given_scratch = None
    if flags[:1] == ["--scratch"] and len(flags) > 1:
        given_scratch, flags = Path(flags[1]), flags[2:]
    import atheris

    with atheris.instrument_imports():
        from tests.fuzz.targets import Targets

    # libFuzzer ends the process from C, past Python's atexit: a temp dir made here outlives the run.
    # Pass --scratch (tests do) to keep it inside a directory that is cleaned up anyway.
    scratch = Path(tempfile.mkdtemp(prefix="midbox-atheris-", dir=given_scratch))
    work = scratch / "corpus"
    # libFuzzer adds what it finds to the first corpus dir: a copy, so the committed seeds stay as they are.
    shutil.copytree(CORPUS / name, work)
    (scratch / "files").mkdir()
    targets = Targets(scratch / "files").all
    if name not in targets:
        raise SystemExit(f"unknown target {name!r}; known: {', '.join(sorted(targets))}")
    if not any(f.startswith("-artifact_prefix=") for f in flags):
        flags.append(f"-artifact_prefix={CORPUS / name}/")
    atheris.Setup([sys.argv[0], *flags, str(work)], targets[name].run)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
