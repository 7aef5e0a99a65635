"""Upgrade: the entries of a ``SealedDir`` (one file per entry, as versions before the sealed log kept
the journal and the outbox) moved into a ``SealedLog``, losing none and doubling none.

In order: (1) every entry the log does not have yet is put into it, oldest first; (2) the log is
settled, so all of them are durable there; (3) only then the old files go, the directory's removal
made durable last. A crash before (2) leaves the old files: the next open imports again, skipping the
names already in the log (import is keyed by name). A crash during (3) leaves some old files whose
entries the log has: skipped the same way, then removed. Nothing runs between the steps of an open
(the appliance starts working once the import returned), so an entry finished and deleted from the
log cannot come back from an old file.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from hardening.atomic import fsync_dir
from hardening.sealbox import SealedDir
from hardening.sealedlog import SealedLog

_SUFFIX = ".sealed"


def import_sealed_dir(log: SealedLog, old: Path, key: bytes, purpose: str) -> int:
    """Move the entries of the SealedDir ``old`` (if it exists) into ``log``; how many were new to it.

    An old entry that fails its integrity check raises ``SealedEntryError`` (naming the file) before
    anything is removed.
    """
    if not old.is_dir() or old.is_symlink():
        return 0
    sealed = SealedDir(old, key, purpose)
    added = 0
    for name in sealed.names():  # (1)
        if name not in log:
            log.put(name, sealed.get(name), durable=False)
            added += 1
    log.settle()  # (2)
    for path in old.iterdir():  # (3): the entries, and temp files of writes a crash interrupted
        if path.name.endswith(_SUFFIX) or (path.name.startswith(".") and path.name.endswith(".tmp")):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
    fsync_dir(old)
    with contextlib.suppress(OSError):  # anything else in it is not ours to delete: the directory stays
        old.rmdir()
        fsync_dir(old.parent)
    return added
