"""The binary on disk: extract it from a verified bundle, keep the old one, swap by rename, restore.

Every file is created beside the installed binary, so each move is a rename within one directory:
atomic on POSIX (the path always names a whole binary) and allowed on Windows, where the running
``midbox.exe`` can be renamed but not overwritten. Windows therefore moves the installed binary
aside first, leaving a moment in which the path names nothing; the service is restarted after the
swap, so the SCM never starts during that moment.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import shutil
import tarfile
from pathlib import Path
from typing import IO

from appliance.upgrade.state import UpgradeError
from hardening.atomic import fsync_dir
from hardening.release import VerifiedRelease

_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def extract_binary(bundle: Path, release: VerifiedRelease, name: str, dest: Path, cap: int) -> str:
    """Write the bundle's ``name`` to ``dest`` (mode 0755) and return its SHA-256, which must equal the
    verified one: the bundle is read a second time, and it may have changed since it was verified."""
    expected = dict(release.files).get(name)
    if expected is None:
        raise UpgradeError(f"the bundle holds no {name}: it is not a bundle for this platform")
    member = f"{release.top}/{name}"
    try:
        if bundle.is_dir():
            with open(bundle / name, "rb") as src:
                digest = _copy(src, dest, cap)
        else:
            with tarfile.open(bundle, mode="r:gz") as tar:
                info = tar.getmember(member)
                src_fh = tar.extractfile(info) if info.isreg() else None
                if src_fh is None:
                    raise UpgradeError(f"{member} is not a regular file in the bundle")
                digest = _copy(src_fh, dest, cap)
    except UpgradeError:
        _remove(dest)
        raise
    except (OSError, tarfile.TarError, KeyError, EOFError) as e:
        _remove(dest)
        raise UpgradeError(
            f"cannot extract {name} from {bundle.name} ({type(e).__name__}): check the disk"
        ) from e
    if digest != expected:
        _remove(dest)
        raise UpgradeError(f"{name} changed after the bundle was verified: download the bundle again")
    return digest


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _copy(src: IO[bytes], dest: Path, cap: int) -> str:
    digest = hashlib.sha256()
    total = 0
    fd = os.open(dest, _CREATE, 0o755)
    with os.fdopen(fd, "wb") as out:
        while chunk := src.read(1 << 20):
            total += len(chunk)
            if total > cap:
                raise UpgradeError(f"the binary is larger than {cap} bytes: not a midbox binary")
            digest.update(chunk)
            out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
    return digest.hexdigest()


def keep_and_swap(target: Path, previous: Path, staged: Path) -> None:
    # 1. keep the installed binary as previous
    if os.name == "nt":
        os.replace(target, previous)  # the running .exe may be renamed, never overwritten
    else:
        tmp = previous.with_name(f".{previous.name}.{secrets.token_hex(4)}.tmp")
        try:
            os.link(target, tmp)  # target keeps naming the installed binary until step 2
        except OSError:
            shutil.copy2(target, tmp)
        os.replace(tmp, previous)
    # 2. the new binary in, by one rename
    os.replace(staged, target)
    fsync_dir(target.parent)


def restore(target: Path, previous: Path, previous_sha256: str) -> None:
    """Put the kept binary back; idempotent, so a resumed rollback may run it twice."""
    if target.exists() and sha256_file(target) == previous_sha256:
        return
    if not previous.exists():
        raise UpgradeError(f"the previous binary {previous} is gone: reinstall midbox from its bundle")
    try:
        os.replace(previous, target)
    except PermissionError:
        # Windows: the failed binary may still run; move it aside, then the previous one in.
        os.replace(target, target.with_name(f".{target.name}.failed"))
        os.replace(previous, target)
    fsync_dir(target.parent)
