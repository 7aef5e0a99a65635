"""Process-level protection for a program that holds secrets in memory.

No core dumps (a crash must not write decrypted credentials to disk) and, on Linux, a
non-dumpable process: other processes of the same user cannot ptrace it or read its memory
through /proc, and /proc/PID files become root-owned.
"""

from __future__ import annotations

import ctypes
import logging
import os
from dataclasses import dataclass

from hardening.errors import HardeningError

log = logging.getLogger(__name__)

_PR_SET_DUMPABLE = 4
_PR_GET_DUMPABLE = 3


class ProcessHardeningError(HardeningError):
    """The process could not be made safe to hold secrets."""


@dataclass(frozen=True)
class ProcessHardening:
    """What ``harden_process`` applied, for the startup log and ``doctor``."""

    core_dumps_disabled: bool
    non_dumpable: bool


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def harden_process() -> ProcessHardening:
    """Disable core dumps and make the process non-dumpable. Call first thing at start.

    Fails closed on Linux: if either step does not take, the caller must not go on to open secrets.
    """
    core = False
    if os.name == "posix":
        import resource

        try:
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        except (ValueError, OSError) as e:
            raise ProcessHardeningError(f"cannot disable core dumps (setrlimit RLIMIT_CORE): {e}") from e
        core = resource.getrlimit(resource.RLIMIT_CORE) == (0, 0)
        if not core:
            raise ProcessHardeningError(
                "core dumps are still enabled after setrlimit; refusing to hold secrets"
            )
    dumpable_off = False
    if os.name == "posix" and os.uname().sysname == "Linux":
        libc = _libc()
        if libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
            err = ctypes.get_errno()
            raise ProcessHardeningError(f"prctl(PR_SET_DUMPABLE, 0) failed: {os.strerror(err)}")
        dumpable_off = is_dumpable() is False
        if not dumpable_off:
            raise ProcessHardeningError("process is still dumpable after prctl; refusing to hold secrets")
    elif os.name == "nt":
        # Windows writes no core files by default; Windows Error Reporting dumps are a host policy.
        log.debug("process hardening on Windows: relying on host WER policy for crash dumps")
    return ProcessHardening(core_dumps_disabled=core, non_dumpable=dumpable_off)


def is_dumpable() -> bool | None:
    """The Linux dumpable flag of this process, or None where it does not exist."""
    if not (os.name == "posix" and os.uname().sysname == "Linux"):
        return None
    return bool(_libc().prctl(_PR_GET_DUMPABLE, 0, 0, 0, 0))
