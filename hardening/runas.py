"""Root working on the service user's state dir: act as the user who owns it.

``install.sh`` makes ``/var/lib/midbox`` owned by the ``midbox`` service user and the README has the
operator run ``trust init``, ``creds add``, ``hosts pin`` and ``doctor`` as root. Files root wrote
there would be root's, 0600, unreadable by the ``User=midbox`` unit. So when root runs a command on
a state dir owned by another user, midbox takes that user's identity before touching it: every file
it creates belongs to the service user, and every check sees what the service will see.

``run`` drops for good (``drop_to``). One-shot commands drop only their effective ids
(``act_as``), so a file the operator names on the command line (an admin's public key in
``/root``) can still be read as root through ``as_invoker``; nothing else regains root.
POSIX only: on Windows the service runs as LocalSystem and none of this applies.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from hardening.errors import HardeningError


class RunAsError(HardeningError):
    """The identity of the state dir's owner could not be taken."""


@dataclass(frozen=True)
class Owner:
    uid: int
    gid: int
    name: str


def state_owner(state_dir: Path) -> Owner | None:
    """The user to act as: the state dir's owner when root runs midbox on another user's dir."""
    if os.name != "posix" or os.geteuid() != 0:
        return None
    try:
        st = os.lstat(state_dir)
    except OSError:
        return None  # not made yet: root's own (install.sh makes it, owned by the service user)
    if st.st_uid == 0:
        return None
    import pwd

    try:
        entry = pwd.getpwuid(st.st_uid)
    except KeyError as e:
        raise RunAsError(
            f"{state_dir} is owned by uid {st.st_uid}, which is no user on this host; "
            f"run: chown -R midbox: {state_dir}  (the service user)"
        ) from e
    return Owner(st.st_uid, entry.pw_gid, entry.pw_name)


def drop_to(owner: Owner) -> None:
    """Become ``owner`` for good (real, effective and saved ids): for ``run``."""
    try:
        os.setgroups([owner.gid])
        os.setgid(owner.gid)
        os.setuid(owner.uid)
    except OSError as e:
        raise RunAsError(
            f"cannot become {owner.name} ({e.strerror}); run: runuser -u {owner.name} -- midbox run ..."
        ) from e
    if os.getuid() != owner.uid or os.geteuid() != owner.uid:
        raise RunAsError(
            f"could not drop root for {owner.name}; run: runuser -u {owner.name} -- midbox run ..."
        )


def act_as(owner: Owner) -> None:
    """Take ``owner``'s effective ids (the saved uid stays root, for ``as_invoker``)."""
    try:
        os.setgroups([owner.gid])
        os.setegid(owner.gid)
        os.seteuid(owner.uid)
    except OSError as e:
        raise RunAsError(
            f"cannot act as {owner.name} ({e.strerror}); run: runuser -u {owner.name} -- midbox ..."
        ) from e


@contextlib.contextmanager
def as_invoker() -> Iterator[None]:
    """Read a file the operator named as the operator (root) who ran an ``act_as`` command."""
    if os.name != "posix" or os.getuid() != 0 or os.geteuid() == 0:
        yield
        return
    uid, gid = os.geteuid(), os.getegid()
    os.seteuid(0)
    os.setegid(0)
    try:
        yield
    finally:
        os.setegid(gid)
        os.seteuid(uid)


@contextlib.contextmanager
def acting_as(owner: Owner | None) -> Iterator[None]:
    """Root as ``owner`` for a block (``enroll``: the key goes to /etc/midbox as root, the host key
    and the audit entry to the state dir as its owner); nothing when ``owner`` is None."""
    if owner is None:
        yield
        return
    groups = os.getgroups()
    act_as(owner)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)
        os.setgroups(groups)
