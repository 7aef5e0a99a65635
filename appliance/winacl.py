"""The Windows state directory's access list: SYSTEM and Administrators only, nothing inherited.

On Windows file modes say nothing (hardening.perms checks only the file type there), and a folder
made under %ProgramData% inherits "Users: read". The state dir holds the DPAPI machine-scope host
key, which any local account can unwrap once it can read the file, so the installer replaces the
inherited list with a protected one; files already inside pick it up through inheritance.
"""

from __future__ import annotations

import ctypes
import hashlib
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from appliance.errors import ApplianceError

SE_FILE_OBJECT = 1
DACL_SECURITY_INFORMATION = 0x4
PROTECTED_DACL_SECURITY_INFORMATION = 0x80000000
SDDL_REVISION_1 = 1

LOCAL_SYSTEM = "SY"
ADMINISTRATORS = "BA"


class AclError(ApplianceError):
    """The access list of a path could not be set or read."""


def service_sid(name: str) -> str:
    """The SID of the virtual account NT SERVICE\\<name>: S-1-5-80- and the SHA-1 of the upper-cased
    UTF-16LE name as five little-endian words (how Windows derives per-service SIDs)."""
    digest = hashlib.sha1(name.upper().encode("utf-16-le"), usedforsecurity=False).digest()
    return "S-1-5-80-" + "-".join(str(w) for w in struct.unpack("<5I", digest))


def private_dacl(extra_sids: Sequence[str] = ()) -> str:
    """SDDL: protected (P), full control (FA) for SYSTEM, Administrators and ``extra_sids``, inherited
    by sub-folders and files (OICI)."""
    trustees = [LOCAL_SYSTEM, ADMINISTRATORS, *extra_sids]
    return "D:P" + "".join(f"(A;OICI;FA;;;{t})" for t in trustees)


def protect_dir(path: Path, extra_sids: Sequence[str] = ()) -> None:
    """Replace ``path``'s DACL with :func:`private_dacl`. Windows only."""
    advapi = ctypes.WinDLL("advapi32", use_last_error=True)  # type: ignore[attr-defined]
    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined]
    advapi.ConvertStringSecurityDescriptorToSecurityDescriptorW.argtypes = [
        ctypes.c_wchar_p,
        ctypes.c_uint32,
        ctypes.POINTER(ctypes.c_void_p),
        ctypes.c_void_p,
    ]
    advapi.GetSecurityDescriptorDacl.argtypes = [
        ctypes.c_void_p,
        ctypes.POINTER(ctypes.c_int),
        ctypes.POINTER(ctypes.c_void_p),
        ctypes.POINTER(ctypes.c_int),
    ]
    advapi.SetNamedSecurityInfoW.argtypes = [
        ctypes.c_wchar_p,
        ctypes.c_int,
        ctypes.c_uint32,
        ctypes.c_void_p,
        ctypes.c_void_p,
        ctypes.c_void_p,
        ctypes.c_void_p,
    ]
    advapi.SetNamedSecurityInfoW.restype = ctypes.c_uint32
    kernel32.LocalFree.argtypes = [ctypes.c_void_p]
    sd = ctypes.c_void_p()
    if not advapi.ConvertStringSecurityDescriptorToSecurityDescriptorW(
        private_dacl(extra_sids), SDDL_REVISION_1, ctypes.byref(sd), None
    ):
        raise AclError(f"cannot build the access list for {path}: Windows error {_last_error()}")
    try:
        present, defaulted = ctypes.c_int(), ctypes.c_int()
        dacl = ctypes.c_void_p()
        if not advapi.GetSecurityDescriptorDacl(
            sd, ctypes.byref(present), ctypes.byref(dacl), ctypes.byref(defaulted)
        ):
            raise AclError(f"cannot read the access list built for {path}: Windows error {_last_error()}")
        err = advapi.SetNamedSecurityInfoW(
            str(path),
            SE_FILE_OBJECT,
            DACL_SECURITY_INFORMATION | PROTECTED_DACL_SECURITY_INFORMATION,
            None,
            None,
            dacl,
            None,
        )
        if err:
            raise AclError(
                f"cannot restrict {path} to SYSTEM and Administrators (Windows error {err}); "
                "run from an elevated prompt"
            )
    finally:
        kernel32.LocalFree(sd)


def dacl_of(path: Path) -> str:
    """``path``'s DACL as SDDL (for checks and tests). Windows only."""
    advapi = ctypes.WinDLL("advapi32", use_last_error=True)  # type: ignore[attr-defined]
    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined]
    advapi.GetNamedSecurityInfoW.argtypes = [
        ctypes.c_wchar_p,
        ctypes.c_int,
        ctypes.c_uint32,
        *[ctypes.c_void_p] * 4,
        ctypes.POINTER(ctypes.c_void_p),
    ]
    advapi.GetNamedSecurityInfoW.restype = ctypes.c_uint32
    advapi.ConvertSecurityDescriptorToStringSecurityDescriptorW.argtypes = [
        ctypes.c_void_p,
        ctypes.c_uint32,
        ctypes.c_uint32,
        ctypes.POINTER(ctypes.c_wchar_p),
        ctypes.c_void_p,
    ]
    kernel32.LocalFree.argtypes = [ctypes.c_void_p]
    sd = ctypes.c_void_p()
    err = advapi.GetNamedSecurityInfoW(
        str(path), SE_FILE_OBJECT, DACL_SECURITY_INFORMATION, None, None, None, None, ctypes.byref(sd)
    )
    if err:
        raise AclError(f"cannot read the access list of {path}: Windows error {err}")
    text = ctypes.c_wchar_p()
    try:
        if not advapi.ConvertSecurityDescriptorToStringSecurityDescriptorW(
            sd, SDDL_REVISION_1, DACL_SECURITY_INFORMATION, ctypes.byref(text), None
        ):
            raise AclError(f"cannot print the access list of {path}: Windows error {_last_error()}")
        return str(text.value)
    finally:
        kernel32.LocalFree(sd)
        if text:
            kernel32.LocalFree(ctypes.cast(text, ctypes.c_void_p))


def _last_error() -> Any:
    return ctypes.get_last_error()  # type: ignore[attr-defined]
