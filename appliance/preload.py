"""Load every module a command may need before root takes the service user's identity.

After ``hardening.runas`` changes identity, the process can no longer read what only root could: the
frozen binary unpacks its modules into a private (0700, root's) directory, and a Python installed
under ``/root`` keeps its standard library there. midbox imports much of its code lazily (a short
start for every command), so a module first needed after the switch would fail to load ("No module
named 'ctypes'", or paramiko's native parts at the first SSH job). So, while still root:

1. the frozen binary's unpacked tree is made traversable and readable by others: it holds only the
   binary's own public contents, stays owned by root and is never writable by anyone else;
2. every module of midbox (but the other platform's) and the libraries it loads lazily are imported.
"""

from __future__ import annotations

import importlib
import logging
import os
import pkgutil
import stat
import sys
from pathlib import Path

log = logging.getLogger(__name__)

# Imported inside functions somewhere in midbox: load them while they can still be read.
_LAZY = (
    "ctypes",
    "pwd",
    "grp",
    "fcntl",
    "resource",
    "httpx",
    "paramiko",
    "cryptography.x509",
    "cryptography.hazmat.primitives.serialization",
)
_OTHER_PLATFORM = ("winacl", "winscm", "winservice", "dpapi")


def before_identity_change() -> None:
    """Make what midbox runs from readable by the identity it is about to take (see the module doc)."""
    bundle = getattr(sys, "_MEIPASS", None)
    if bundle is not None:
        _open_up(Path(bundle))
    for name in _LAZY:
        _load(name)
    for package in ("hardening", "appliance"):
        module = importlib.import_module(package)
        for info in pkgutil.walk_packages(module.__path__, prefix=f"{package}."):
            if info.name.endswith(".__main__"):
                continue  # the entry point: importing it would run the command line again
            if os.name != "nt" and any(part in info.name for part in _OTHER_PLATFORM):
                continue
            _load(info.name)


def _load(name: str) -> None:
    try:
        importlib.import_module(name)
    except ImportError as e:  # a module this platform or build does not have: nothing to keep open
        log.debug("preload of %s skipped: %s", name, e)


def _open_up(root: Path) -> None:
    # Directories the bootloader made 0700 get o+rx; files get o+r. Nothing gains a write bit.
    for directory, _dirs, files in os.walk(root):
        _add(Path(directory), stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
        for name in files:
            _add(Path(directory) / name, stat.S_IRGRP | stat.S_IROTH)


def _add(path: Path, bits: int) -> None:
    try:
        st = os.lstat(path)
        if not stat.S_ISLNK(st.st_mode):
            os.chmod(path, stat.S_IMODE(st.st_mode) | bits)
    except OSError as e:
        log.debug("could not open up %s: %s", path, e)
