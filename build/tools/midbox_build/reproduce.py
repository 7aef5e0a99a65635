"""build/reproduce: build the same commit twice in two fresh directories and compare the bytes.

Each build gets its own copy of the tracked source (git archive), its own temp dir, venv and
PyInstaller work folder, and starts at a different time; only the commit is shared. Exit 0 only
if both binaries (and their SBOMs) are byte-identical.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from midbox_build.build import export_source
from midbox_build.common import BuildError, clean_env, git, host_target, run, sha256_file


def _differences(a: Path, b: Path) -> list[str]:
    la = set(a.read_text(encoding="utf-8").splitlines())
    lb = set(b.read_text(encoding="utf-8").splitlines())
    return [f"only in build 1: {x}" for x in sorted(la - lb)] + [
        f"only in build 2: {x}" for x in sorted(lb - la)
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="build/reproduce", description=__doc__)
    p.add_argument("--ref", default="HEAD")
    p.add_argument("--python", default=sys.executable)
    p.add_argument("--wheelhouse", type=Path)
    p.add_argument("--keep", action="store_true", help="keep both build directories")
    args = p.parse_args(argv)
    target = host_target()
    roots: list[Path] = []
    try:
        commit = git("rev-parse", f"{args.ref}^{{commit}}")
        epoch = git("log", "-1", "--format=%ct", commit)
        shas = []
        for i in (1, 2):
            root = Path(tempfile.mkdtemp(prefix=f"midbox-reproduce-{i}-"))
            roots.append(root)
            src = root / "source"
            export_source(commit, src)
            out = root / "out" / target.binary_name
            cmd = [
                args.python,
                str(src / "build" / "build"),
                "--src",
                str(src),
                "--commit",
                commit,
                "--epoch",
                epoch,
                "--out",
                str(out),
                "--python",
                args.python,
                # Only the bytes are compared here; the manifest is build/build's own check.
                "--no-manifest-check",
            ]
            if args.wheelhouse:
                cmd += ["--wheelhouse", str(args.wheelhouse.resolve())]
            # A different TMPDIR per build: different venv and work paths, as on two machines.
            tmp = root / "tmp"
            tmp.mkdir()
            run(cmd, env=clean_env(TMPDIR=str(tmp), TEMP=str(tmp), TMP=str(tmp)), cwd=root)
            shas.append(sha256_file(out))
            print(f"build {i}: {shas[-1]}  {root}", flush=True)
    except BuildError as e:
        print(f"reproduce: {e}", file=sys.stderr)
        return 1
    finally:
        if not args.keep:
            for root in roots:
                shutil.rmtree(root, ignore_errors=True)
    same_bin = shas[0] == shas[1]
    if same_bin:
        print(f"reproducible: {target.binary_name} {shas[0]} (commit {commit})")
        return 0
    print("NOT reproducible: the two builds differ", file=sys.stderr)
    if args.keep:
        c1, c2 = (r / "out" / f"{target.binary_name}.contents.txt" for r in roots)
        for line in _differences(c1, c2)[:50]:
            print(f"  {line}", file=sys.stderr)
    else:
        print("  run build/reproduce --keep to compare the content listings", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
