"""Imported by snippets that run in Windows' CPython under Wine (never by pytest on Linux).

Sets security descriptors the way another program or an administrator would, through advapi32,
so the tests can put a file into each state the checks must refuse.
"""

from __future__ import annotations

import ctypes
from typing import Any

OWNER_INFO, DACL_INFO, PROTECTED_DACL_INFO = 0x1, 0x4, 0x80000000


def _advapi() -> Any:
    adv = ctypes.WinDLL("advapi32", use_last_error=True)  # type: ignore[attr-defined]
    adv.ConvertStringSecurityDescriptorToSecurityDescriptorW.argtypes = [
        ctypes.c_wchar_p,
        ctypes.c_uint32,
        ctypes.POINTER(ctypes.c_void_p),
        ctypes.c_void_p,
    ]
    adv.SetFileSecurityW.argtypes = [ctypes.c_wchar_p, ctypes.c_uint32, ctypes.c_void_p]
    adv.InitializeSecurityDescriptor.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
    adv.SetSecurityDescriptorDacl.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_int]
    adv.SetSecurityDescriptorOwner.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int]
    adv.ConvertStringSidToSidW.argtypes = [ctypes.c_wchar_p, ctypes.POINTER(ctypes.c_void_p)]
    return adv


def _check(ok: int, what: str) -> None:
    if not ok:
        raise OSError(f"{what} failed (Windows error {ctypes.get_last_error()})")  # type: ignore[attr-defined]


def set_sddl(path: str, sddl: str) -> None:
    """SetFileSecurityW with the owner (if the SDDL names one) and the DACL of ``sddl``."""
    adv = _advapi()
    sd = ctypes.c_void_p()
    _check(adv.ConvertStringSecurityDescriptorToSecurityDescriptorW(sddl, 1, ctypes.byref(sd), None), "parse")
    info = (
        DACL_INFO
        | (PROTECTED_DACL_INFO if "D:P" in sddl else 0)
        | (OWNER_INFO if sddl.startswith("O:") else 0)
    )
    _check(adv.SetFileSecurityW(path, info, sd), "SetFileSecurityW")


def null_dacl_descriptor(owner_sid: str) -> tuple[Any, int]:
    """An absolute descriptor with ``owner_sid`` and a NULL DACL (keep the first item alive)."""
    adv = _advapi()
    buf = ctypes.create_string_buffer(64)  # SECURITY_DESCRIPTOR is 40 bytes on 64-bit
    _check(adv.InitializeSecurityDescriptor(buf, 1), "InitializeSecurityDescriptor")
    _check(adv.SetSecurityDescriptorDacl(buf, 1, None, 0), "SetSecurityDescriptorDacl")
    sid = ctypes.c_void_p()
    _check(adv.ConvertStringSidToSidW(owner_sid, ctypes.byref(sid)), "ConvertStringSidToSidW")
    _check(adv.SetSecurityDescriptorOwner(buf, sid, 0), "SetSecurityDescriptorOwner")
    return (buf, sid), ctypes.addressof(buf)


def set_null_dacl(path: str) -> None:
    adv = _advapi()
    keep, address = null_dacl_descriptor("S-1-5-18")
    _check(adv.SetFileSecurityW(path, DACL_INFO, address), "SetFileSecurityW")
    del keep
