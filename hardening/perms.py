"""Refuse protected files and directories that others could read or replace.

Every message names the exact ``chmod``/``chown`` that fixes the problem. On Windows, where modes
do not express access, the owner and DACL are checked instead (``hardening.winacl``) and the message
names the ``icacls`` command line that fixes it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shlex
import stat
from collections.abc import Callable
from pathlib import Path

from hardening import winacl
from hardening.errors import HardeningError

_NAME_SURROGATE = 0x20000000  # IsReparseTagNameSurrogate: junctions, symlinks; not dedup or cloud files


class PermissionsError(HardeningError):
    """A protected path is group/world accessible, owned by another user, or not what it should be."""


def _owner_name(uid: int) -> str:
    try:
        import pwd

        return pwd.getpwuid(uid).pw_name
    except (ImportError, KeyError):
        return str(uid)


def unreadable_hint(path: Path, e: OSError) -> str:
    """Why ``path`` could not be opened, with the fix; a permission problem is named as one."""
    if isinstance(e, PermissionError):
        return permission_recipe(path)
    if isinstance(e, FileNotFoundError):
        return "it does not exist; check the path in the config"
    return e.strerror or type(e).__name__


def permission_recipe(path: Path) -> str:
    """'permission denied' with the command that fixes it: run as the owner, or hand the file over."""
    if os.name != "posix":
        return "permission denied; run midbox as the account that owns it, or grant it read access (icacls)"
    me = _owner_name(os.geteuid())
    quoted = shlex.quote(str(path))
    try:
        st = os.stat(path)
        owner = _owner_name(st.st_uid)
    except OSError:
        return (
            f"permission denied for {me} on {path} or a directory above it; "
            "run midbox as the user the files belong to"
        )
    if owner != me and st.st_uid == 0:
        # Root's files the service reads (/etc/midbox) are shared through the service's group.
        group = _group_name(os.getegid())
        return (
            f"permission denied: it belongs to root and {me} may not read it; "
            f"run: chgrp {group} {quoted} && chmod g+r {quoted}"
        )
    if owner != me:
        return (
            f"permission denied: it belongs to {owner}, midbox runs as {me}; "
            f"run: runuser -u {owner} -- midbox ...  (or: chown {me} {quoted})"
        )
    return f"permission denied for its owner {me}; run: chmod u+rw {quoted}"


def _group_name(gid: int) -> str:
    try:
        import grp

        return grp.getgrgid(gid).gr_name
    except (ImportError, KeyError):
        return str(gid)


def _is_name_surrogate(st: os.stat_result) -> bool:
    """A Windows junction or symlink (a reparse point that names another file); never on POSIX."""
    tag: int = getattr(st, "st_reparse_tag", 0)
    return bool(tag & _NAME_SURROGATE)


def _check_stat(st: os.stat_result, path: Path, *, is_dir: bool) -> None:
    quoted = shlex.quote(str(path))
    if is_dir and not stat.S_ISDIR(st.st_mode):
        raise PermissionsError(f"{path} must be a directory; move it away and let midbox create it")
    if not is_dir and not stat.S_ISREG(st.st_mode):
        raise PermissionsError(f"{path} must be a regular file (not a link or device); replace it")
    if _is_name_surrogate(st):
        raise PermissionsError(f"{path} is a junction or symlink; replace it with a real one")
    if os.name != "posix":
        return
    euid = os.geteuid()
    if st.st_uid != euid:
        me, owner = _owner_name(euid), _owner_name(st.st_uid)
        chown = f"chown -R {me}: {quoted}" if is_dir else f"chown {me} {quoted}"
        raise PermissionsError(
            f"{path} is owned by {owner}, not by {me} who runs midbox; run: {chown}  "
            f"(or, if midbox should run as {owner}: runuser -u {owner} -- midbox ...)"
        )
    loose = stat.S_IMODE(st.st_mode) & 0o077
    if loose:
        want = "700" if is_dir else "600"
        raise PermissionsError(
            f"{path} is accessible by group/others (mode {stat.S_IMODE(st.st_mode):04o}); "
            f"run: chmod {want} {quoted}"
        )


def _create_dir_command(path: Path) -> str:
    if os.name != "nt":
        return f"install -d -m 700 {shlex.quote(str(path))}"
    try:
        user = winacl.current_user_sid()
    except OSError:
        return f'mkdir "{path}" (then let midbox check it again)'
    return f'mkdir "{path}"  then: {winacl.icacls_fix(path, user, is_dir=True)}'


def _check_windows(read: Callable[[], winacl.FileSecurity], path: Path, *, is_dir: bool) -> None:
    """Owner and DACL private to this user, SYSTEM and Administrators (or an error naming icacls)."""
    try:
        security = read()
        user = winacl.current_user_sid()
    except OSError as e:
        raise PermissionsError(f"cannot read the owner and access list of {path}: {e}") from e
    problem = winacl.problem_of(security, user)
    if problem is not None:
        fix = winacl.icacls_fix(path, user, is_dir=is_dir, problem=problem)
        raise PermissionsError(f"{path} {problem.reason}; run: {fix}")


def check_private_dir(path: Path) -> None:
    """``path`` is a directory of ours that nobody else can list, enter or write (0700)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError as e:
        raise PermissionsError(f"{path} does not exist; create it with: {_create_dir_command(path)}") from e
    _check_stat(st, path, is_dir=True)
    if os.name == "nt":
        _check_windows(lambda: winacl.security_of_path(path), path, is_dir=True)


def check_private_file(path: Path) -> None:
    """``path`` is a regular file of ours, not a symlink, readable by nobody else (0600)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError as e:
        raise PermissionsError(f"{path} does not exist") from e
    _check_stat(st, path, is_dir=False)
    if os.name == "nt":
        _check_windows(lambda: winacl.security_of_path(path), path, is_dir=False)


def check_private_fd(fd: int, path: Path) -> None:
    """The same check on an open descriptor, so the file checked is the file read."""
    _check_stat(os.fstat(fd), path, is_dir=False)
    if os.name == "nt":
        _check_windows(lambda: winacl.security_of_fd(fd), path, is_dir=False)


def make_private(path: Path) -> None:
    """Make an existing file or directory of ours private: 0600/0700, or on Windows the private DACL."""
    st = os.lstat(path)
    is_dir = stat.S_ISDIR(st.st_mode)
    if not is_dir and not stat.S_ISREG(st.st_mode):
        raise PermissionsError(f"{path} must be a regular file or directory (not a link or device)")
    if os.name == "nt":
        try:
            winacl.make_private(path, is_dir=is_dir)
        except OSError as e:
            raise PermissionsError(f"cannot set a private access list on {path}: {e}") from e
        return
    os.chmod(path, 0o700 if is_dir else 0o600)


def mkdir_private(path: Path) -> None:
    """Create ``path`` (and missing parents) if it is missing, private from birth: 0700, or on
    Windows the protected DACL. An existing directory is left as it is (callers check it if needed)."""
    if os.path.lexists(path):
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        if os.name == "nt":
            winacl.create_private_dir(path)
        else:
            os.mkdir(path, 0o700)


def ensure_private_dir(path: Path) -> None:
    """Create ``path`` as 0700 if it is missing (parents as needed), then check it.

    On Windows the directory gets a protected DACL (full control for this user, SYSTEM and
    Administrators, inherited by what is created inside), so nothing is inherited from above.
    """
    mkdir_private(path)
    check_private_dir(path)


def read_regular_file(path: Path, max_bytes: int) -> bytes:
    """Read a small state file that must be a regular file in its place, never a link to one elsewhere.

    Unlike ``read_private_file`` the owner and mode are not checked (``trust show`` or ``doctor`` may
    run as root on the service user's state); FileNotFoundError passes through.
    """
    if os.name == "nt":
        with contextlib.suppress(FileNotFoundError):
            link = os.lstat(path)
            if stat.S_ISLNK(link.st_mode) or _is_name_surrogate(link):
                raise PermissionsError(f"{path} is a symlink or junction; replace it with the real file")
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise
    except OSError as e:
        raise PermissionsError(
            f"cannot open {path}: {e.strerror} (a symlink is refused: replace it with the real file)"
        ) from e
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise PermissionsError(f"{path} is not a regular file; replace it with the real file")
        return _read_capped_fd(fd, path, max_bytes)
    finally:
        os.close(fd)


def _read_capped_fd(fd: int, path: Path, max_bytes: int) -> bytes:
    data = _read_upto(fd, max_bytes + 1)
    if len(data) > max_bytes:
        raise PermissionsError(f"{path} is larger than the {max_bytes} bytes allowed")
    return data


def _read_upto(fd: int, limit: int) -> bytes:
    """At most ``limit`` bytes from ``fd``; a caller asks for one more than it allows to see an overrun."""
    chunks: list[bytes] = []
    remaining = limit
    while remaining > 0:
        chunk = os.read(fd, min(remaining, 1 << 16))
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def read_private_file(path: Path, max_bytes: int) -> bytes:
    """Read a small protected file: no symlinks, ours, 0600, at most ``max_bytes`` (checked on the fd).

    On Windows, where O_NOFOLLOW does not exist, a symlink or junction in its place is refused
    before opening; the owner/DACL check then runs on the handle that is read.
    """
    if os.name == "nt":
        with contextlib.suppress(FileNotFoundError):
            link = os.lstat(path)
            if stat.S_ISLNK(link.st_mode) or _is_name_surrogate(link):
                raise PermissionsError(f"{path} is a symlink or junction; a protected file must be real")
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise PermissionsError(f"{path} is a symlink; a protected file must be a real file") from e
        raise PermissionsError(f"cannot open {path}: {unreadable_hint(path, e)}") from e
    try:
        check_private_fd(fd, path)
        size = os.fstat(fd).st_size
        if size > max_bytes:
            raise PermissionsError(
                f"{path} is {size} bytes, more than the {max_bytes} allowed; it is not ours"
            )
        data = _read_upto(fd, max_bytes + 1)
        if len(data) > max_bytes:
            raise PermissionsError(f"{path} grew past {max_bytes} bytes while being read")
        return data
    finally:
        os.close(fd)
