"""build/build: the frozen one-file binary from a clean copy of the source and the hash-locked deps.

Steps: 1 copy the committed source (git archive) into a fresh temp dir and add _build_info.py;
2 make a fresh venv there and install only the runtime and PyInstaller locks, by hash;
3 run PyInstaller with PYTHONHASHSEED=0 and SOURCE_DATE_EPOCH = commit time;
4 list what the binary contains, write the SBOM, and compare with build/manifest-<os>.txt.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from midbox_build import manifest
from midbox_build.common import (
    DIST,
    REPO,
    BuildError,
    Target,
    clean_env,
    git,
    host_target,
    run,
    sha256_file,
    venv_python,
)
from midbox_build.frozen import read_listing


@dataclass(frozen=True)
class BuildResult:
    binary: Path
    sbom: Path
    listing: Path
    sha256: str
    seconds: float


def _version(src: Path) -> str:
    text = (src / "appliance" / "__init__.py").read_text(encoding="utf-8")
    m = re.search(r'^__version__ = "([^"]+)"$', text, re.M)
    if not m:
        raise BuildError("appliance/__init__.py has no __version__")
    return m.group(1)


def export_source(ref: str, dest: Path) -> None:
    """The tracked files of ``ref`` only, with git's fixed mtimes: no stray local files in a release."""
    proc = subprocess.run(["git", "archive", "--format=tar", ref], cwd=REPO, capture_output=True)
    if proc.returncode != 0:
        raise BuildError(f"git archive {ref} failed: {proc.stderr.decode(errors='replace').strip()}")
    dest.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(proc.stdout)) as tar:
        tar.extractall(dest, filter="data")


def _write_build_info(src: Path, commit: str, epoch: int) -> None:
    info = src / "appliance" / "_build_info.py"
    info.write_text(
        '"""Written by build/build into the build\'s copy of the source; never committed."""\n\n'
        f'SOURCE_COMMIT = "{commit}"\nSOURCE_DATE_EPOCH = {epoch}\n',
        encoding="utf-8",
    )
    os.utime(info, (epoch, epoch))


def _make_build_venv(
    src: Path, work: Path, target: Target, python: str, wheelhouse: Path | None, epoch: int
) -> str:
    venv = work / "venv"
    env = clean_env(SOURCE_DATE_EPOCH=str(epoch))
    run([python, "-m", "venv", str(venv)], env=env)
    py = str(venv_python(venv))
    pip = [py, "-m", "pip", "--isolated", "--disable-pip-version-check", "install", "--quiet"]
    pip += ["--require-hashes", "--no-deps", "--only-binary", ":all:", "--no-compile"]
    if wheelhouse is not None:
        pip += ["--no-index", "--find-links", str(wheelhouse)]
    run(
        [
            *pip,
            "-r",
            str(src / "build" / "lock" / target.runtime_lock.name),
            "-r",
            str(src / "build" / "lock" / target.build_lock.name),
        ],
        env=env,
    )
    return py


def build(
    *,
    src: Path,
    commit: str,
    epoch: int,
    out: Path,
    target: Target,
    python: str,
    wheelhouse: Path | None,
    work: Path,
    check_manifest: bool = True,
    prepared_python: bool = False,
) -> BuildResult:
    started = time.monotonic()
    if not re.fullmatch(r"[0-9a-f]{40}", commit):
        raise BuildError(f"source commit must be a full git hash, got {commit!r}")
    # 1. the source copy gets the commit; the repository never does
    _write_build_info(src, commit, epoch)
    version = _version(src)

    # 2. a venv with only the runtime dependencies and PyInstaller, installed by hash
    # (or, for the Wine cross-build, an embeddable CPython that build/wine filled from the same locks)
    py = python if prepared_python else _make_build_venv(src, work, target, python, wheelhouse, epoch)

    # 3. PyInstaller, its work folder and cache inside the temp dir
    pyi_env = clean_env(
        SOURCE_DATE_EPOCH=str(epoch),
        PYINSTALLER_CONFIG_DIR=str(work / "pyi-config"),
        MIDBOX_BUILD_SRC=str(src),
        MIDBOX_BUILD_NAME=target.binary_name.removesuffix(".exe"),
        # The module archive at zlib's best (PyInstaller's default is 6; the outer archive is 9 already):
        # a smaller binary, the same bytes every time.
        PYINSTALLER_ZLIB_COMPRESSION_LEVEL="9",
        # No 3.11 column tables in the compiled modules: 1.29 MB less binary; tracebacks keep file
        # and line and lose only the ^^^^ markers (issue 19).
        PYTHONNODEBUGRANGES="1",
    )
    run(
        [
            py,
            "-m",
            "PyInstaller",
            "--noconfirm",
            "--clean",
            "--log-level",
            "WARN",
            "--distpath",
            str(work / "dist"),
            "--workpath",
            str(work / ".pyi-work"),
            str(src / "build" / "midbox.spec"),
        ],
        env=pyi_env,
        cwd=work,
    )
    built = work / "dist" / target.binary_name

    # 4. what is inside: full listing, SBOM, manifest
    listing = work / "dist" / f"{target.binary_name}.contents.txt"
    sbom = work / "dist" / f"{target.binary_name}.cdx.json"
    # The tools path goes in by code, not PYTHONPATH: an embeddable CPython's ._pth file makes it
    # ignore the environment.
    launch = (
        "import sys; sys.path.insert(0, sys.argv.pop(1)); "
        "from midbox_build.inspect_frozen import main; sys.exit(main())"
    )
    run(
        [
            py,
            "-c",
            launch,
            str(src / "build" / "tools"),
            str(built),
            "--listing",
            str(listing),
            "--sbom",
            str(sbom),
            "--version",
            version,
            "--commit",
            commit,
            "--epoch",
            str(epoch),
        ],
        env=clean_env(),
        cwd=work,
    )
    entries = read_listing(listing)
    bad = manifest.forbidden_found(entries, windows=target.os_name == "windows")
    if bad:
        raise BuildError(f"the binary contains modules it must not ship {bad}: check the spec's EXCLUDES")
    manifest_path = src / "build" / target.manifest.name
    if check_manifest and not manifest_path.exists():
        raise BuildError(
            f"build/{target.manifest.name} does not exist: build with --no-manifest-check, then run "
            "build/manifest update, review the file and commit it"
        )
    if check_manifest:
        diff = manifest.compare(
            manifest.read_manifest(src / "build" / target.manifest.name), manifest.manifest_lines(entries)
        )
        if diff:
            raise BuildError(
                f"the binary differs from build/{target.manifest.name}:\n  "
                + "\n  ".join(diff)
                + "\nreview the change, then run: build/manifest update"
            )

    out.parent.mkdir(parents=True, exist_ok=True)
    results = []
    for f, dest in (
        (built, out),
        (sbom, out.with_name(out.name + ".cdx.json")),
        (listing, out.with_name(out.name + ".contents.txt")),
    ):
        shutil.copyfile(f, dest)
        results.append(dest)
    out.chmod(0o755)
    return BuildResult(out, results[1], results[2], sha256_file(out), time.monotonic() - started)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="build/build", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--ref", default="HEAD", help="git commit or tag to build (default HEAD)")
    p.add_argument(
        "--src", type=Path, help="build this source tree as is (no git); needs --commit and --epoch"
    )
    p.add_argument("--commit", help="source commit to record (default: the hash of --ref)")
    p.add_argument("--epoch", type=int, help="SOURCE_DATE_EPOCH (default: commit time of --ref)")
    p.add_argument("--out", type=Path, help="output binary (default dist/midbox-<os>-<arch>[.exe])")
    p.add_argument("--python", default=sys.executable, help="Python 3.11 to build with (default: this one)")
    p.add_argument("--wheelhouse", type=Path, help="install wheels from this folder only (offline rebuild)")
    p.add_argument("--keep-work", action="store_true", help="keep the temp dir for inspection")
    p.add_argument("--no-manifest-check", action="store_true", help="skip the manifest comparison")
    p.add_argument(
        "--prepared-python",
        action="store_true",
        help="build with --python as is, no venv: it already holds exactly the locked wheels "
        "(build/wine uses this for Windows' embeddable CPython, which cannot make a venv)",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        target = host_target()
        work = Path(tempfile.mkdtemp(prefix="midbox-build-"))
        try:
            if args.src is not None:
                if args.commit is None or args.epoch is None:
                    raise BuildError("--src needs --commit and --epoch (the tree has no git history)")
                src = work / "src"
                shutil.copytree(args.src, src, symlinks=True)
                commit, epoch = args.commit, args.epoch
            else:
                commit = args.commit or git("rev-parse", f"{args.ref}^{{commit}}")
                epoch = (
                    args.epoch
                    if args.epoch is not None
                    else int(os.environ.get("SOURCE_DATE_EPOCH") or git("log", "-1", "--format=%ct", commit))
                )
                if args.ref == "HEAD" and git("status", "--porcelain", "--untracked-files=no"):
                    print(
                        "build: note: uncommitted changes are not in the binary (it is built from HEAD)",
                        file=sys.stderr,
                    )
                src = work / "src"
                export_source(commit, src)
            out = args.out or DIST / target.binary_name
            result = build(
                src=src,
                commit=commit,
                epoch=epoch,
                out=out.resolve(),
                target=target,
                python=args.python,
                wheelhouse=args.wheelhouse,
                work=work,
                check_manifest=not args.no_manifest_check,
                prepared_python=args.prepared_python,
            )
        finally:
            if args.keep_work:
                print(f"build: work dir kept: {work}", file=sys.stderr)
            else:
                shutil.rmtree(work, ignore_errors=True)
    except BuildError as e:
        print(f"build: {e}", file=sys.stderr)
        return 1
    size = result.binary.stat().st_size
    print(f"{result.sha256}  {result.binary.name}")
    print(
        f"build: {result.binary} ({size} bytes, commit {commit[:12]}, epoch {epoch}) "
        f"in {result.seconds:.0f}s",
        file=sys.stderr,
    )
    return 0
