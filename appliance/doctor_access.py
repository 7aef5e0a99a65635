"""When root runs ``doctor``, check the files as the unit's ``User=`` will see them: root reads
everything, so a 0600 root-owned key passes as root and fails the service at its first start."""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterable
from pathlib import Path

from appliance.config.model import Config
from appliance.config.verify import signature_path
from appliance.doctor import Finding, Level

UNIT_PATH = Path("/etc/systemd/system/midbox.service")
DEFAULT_USER = "midbox"
_USER = re.compile(r"^\s*User=(\S+)\s*$", re.M)


def unit_user(unit: Path = UNIT_PATH) -> str | None:
    """The ``User=`` of the installed unit (install.sh's user if it names none); None with no unit."""
    try:
        m = _USER.search(unit.read_text(errors="replace")[:100_000])
    except OSError:
        return None
    return m.group(1) if m else DEFAULT_USER


def _bits(st: os.stat_result, uid: int, gids: frozenset[int]) -> int:
    if st.st_uid == uid:
        return (st.st_mode >> 6) & 7
    if st.st_gid in gids:
        return (st.st_mode >> 3) & 7
    return st.st_mode & 7


def can_access(path: Path, uid: int, gids: frozenset[int], want: int) -> bool:
    """Whether ``uid`` could open ``path`` with ``want`` (4 read, 2 write, 1 search): every parent must
    be searchable, and the file itself must grant ``want`` (ACLs aside)."""
    if uid == 0:
        return True
    path = path.absolute()
    try:
        for parent in reversed(path.parents):
            if not _bits(os.stat(parent), uid, gids) & 1:
                return False
        return _bits(os.stat(path), uid, gids) & want == want
    except OSError:
        return False


def needed_files(config: Config, state_dir: Path) -> Iterable[tuple[Path, int]]:
    source = config.settings.source
    yield from ((source, 4), (signature_path(source), 4), (config.instance.ca_file, 4))
    for path in (config.instance.client_cert, config.instance.client_key):
        if path is not None:
            yield path, 4
    yield state_dir, 7


def check_service_user(config: Config, state_dir: Path, user: str) -> list[Finding]:
    import grp
    import pwd

    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        return [Finding(Level.WARN, "service user", f"no user {user!r} on this host; install.sh makes it")]
    gids = frozenset({entry.pw_gid, *(g.gr_gid for g in grp.getgrall() if user in g.gr_mem)})
    found: list[Finding] = []
    for path, want in needed_files(config, state_dir):
        if not path.exists() or can_access(path, entry.pw_uid, gids, want):
            continue  # a missing file is reported by the check that needs it
        st = path.stat()
        shown = f"{path} ({_owner(st)} {stat.S_IMODE(st.st_mode):04o})"
        fix = f"chown -R {user}: {path}" if want == 7 else f"chown root:{user} {path} && chmod 0640 {path}"
        found.append(Finding(Level.FAIL, "service user", f"{user!r} cannot read {shown}; run: {fix}"))
    return found or [Finding(Level.OK, "service user", f"{user!r} can read every file it needs")]


def _owner(st: os.stat_result) -> str:
    import grp
    import pwd

    try:
        owner = pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        owner = str(st.st_uid)
    try:
        group = grp.getgrgid(st.st_gid).gr_name
    except KeyError:
        group = str(st.st_gid)
    return f"{owner}:{group}"
