"""Owner and DACL of Windows files, read and set through advapi32 with ctypes (no pywin32).

``problem_of`` holds the rules and runs anywhere; everything else calls Windows and is exercised by
tests/windows in Windows' CPython under Wine. A file or directory is private when its owner is the
user running midbox, SYSTEM or Administrators, its DACL exists (a NULL DACL lets everyone in), and
every entry that grants access is for one of those three. Deny entries only take access away.
"""

from __future__ import annotations

import ctypes
import hashlib
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath

SYSTEM_SID = "S-1-5-18"

ADMINISTRATORS_SID = "S-1-5-32-544"
_KNOWN_NAMES = {
    "S-1-1-0": "Everyone",
    "S-1-3-0": "CREATOR OWNER",
    "S-1-5-4": "INTERACTIVE",
    "S-1-5-7": "ANONYMOUS LOGON",
    "S-1-5-11": "Authenticated Users",
    "S-1-5-32-545": "BUILTIN\\Users",
    "S-1-5-32-546": "BUILTIN\\Guests",
    SYSTEM_SID: "SYSTEM",
    ADMINISTRATORS_SID: "BUILTIN\\Administrators",
}

# ACE types (winnt.h). Allowed and callback-allowed ACEs carry the SID right after the mask.
_ALLOW_TYPES = frozenset({0x0, 0x9})
_DENY_TYPES = frozenset({0x1, 0x6, 0xA, 0xC})
_SID_AFTER_MASK = _ALLOW_TYPES | {0x1, 0xA}  # object ACEs (0x5, 0x6, 0xB, 0xC) put GUIDs first

_OWNER_INFO = 0x1
_DACL_INFO = 0x4
_PROTECTED_DACL_INFO = 0x80000000
_SE_FILE_OBJECT = 1
_TOKEN_QUERY = 0x8
_TOKEN_USER_CLASS = 1
_SDDL_REVISION_1 = 1


def system_dll(name: str) -> ctypes.CDLL:
    """A Windows system DLL, loaded the one way midbox loads them: GetLastError is kept per call
    (``use_last_error``), so ``ctypes.get_last_error()`` names the failure of the call just made."""
    dll: ctypes.CDLL = ctypes.WinDLL(name, use_last_error=True)  # type: ignore[attr-defined]
    return dll


@dataclass(frozen=True)
class Ace:
    """One DACL entry; ``sid`` is None for types whose layout midbox does not read."""

    type: int
    flags: int
    mask: int
    sid: str | None


@dataclass(frozen=True)
class FileSecurity:
    """Owner and DACL of one object; ``dacl`` is None for a NULL DACL (everyone has full access)."""

    owner: str | None
    dacl: tuple[Ace, ...] | None


@dataclass(frozen=True)
class Problem:
    """Why an object is not private, and what the fix has to do."""

    reason: str
    foreign_sids: tuple[str, ...] = ()
    bad_owner: bool = False


def sid_name(sid: str | None) -> str:
    if sid is None:
        return "an unreadable SID"
    name = _KNOWN_NAMES.get(sid)
    return f"{name} ({sid})" if name else sid


def problem_of(security: FileSecurity, user_sid: str) -> Problem | None:
    """None if ``security`` is private to ``user_sid``, SYSTEM and Administrators; else the first reason."""
    trusted = {user_sid, SYSTEM_SID, ADMINISTRATORS_SID}
    if security.owner not in trusted:
        return Problem(
            f"is owned by {sid_name(security.owner)}, not by the user running midbox ({user_sid}), "
            "SYSTEM or Administrators",
            bad_owner=True,
        )
    if security.dacl is None:
        return Problem("has a NULL DACL, which gives everyone full access")
    foreign: list[str] = []
    for ace in security.dacl:
        if ace.type in _DENY_TYPES:
            continue
        if ace.type not in _ALLOW_TYPES or ace.sid is None:
            # Object ACEs belong to directory-service objects, never to files: fail closed.
            return Problem(f"has an access entry of type {ace.type:#x} that midbox does not accept")
        if ace.sid not in trusted and ace.sid not in foreign:
            foreign.append(ace.sid)
    if foreign:
        names = ", ".join(sid_name(sid) for sid in foreign)
        return Problem(f"grants access to {names}", foreign_sids=tuple(foreign))
    return None


def icacls_fix(path: PurePath, user_sid: str, *, is_dir: bool, problem: Problem | None = None) -> str:
    """The icacls command line(s) that make ``path`` private, as the POSIX messages name chmod."""
    quoted = f'"{path}"'
    inherit = "(OI)(CI)" if is_dir else ""
    grants = " ".join(f"*{sid}:{inherit}F" for sid in (SYSTEM_SID, ADMINISTRATORS_SID, user_sid))
    steps: list[str] = []
    if problem is not None and problem.bad_owner:
        steps.append(f"icacls {quoted} /setowner *{user_sid}")
    if problem is not None and problem.foreign_sids:
        steps.append(f"icacls {quoted} /remove:g " + " ".join(f"*{sid}" for sid in problem.foreign_sids))
    steps.append(f"icacls {quoted} /inheritance:r /grant:r {grants}")
    return "  then: ".join(steps)


def private_sddl(user_sid: str, *, is_dir: bool) -> str:
    """Protected DACL: full control for SYSTEM, Administrators and the user; inherited by children."""
    inherit = "OICI" if is_dir else ""
    return "D:P" + "".join(f"(A;{inherit};FA;;;{sid})" for sid in (SYSTEM_SID, ADMINISTRATORS_SID, user_sid))


# --- Windows calls. Every function below needs Windows (or Wine). ------------------------------


class _TokenUser(ctypes.Structure):
    _fields_ = [("sid", ctypes.c_void_p), ("attributes", ctypes.c_uint32)]


class _AceHeader(ctypes.Structure):
    _fields_ = [("type", ctypes.c_uint8), ("flags", ctypes.c_uint8), ("size", ctypes.c_uint16)]


class _AllowAce(ctypes.Structure):
    _fields_ = [("header", _AceHeader), ("mask", ctypes.c_uint32), ("sid_start", ctypes.c_uint32)]


class _SecurityAttributes(ctypes.Structure):
    _fields_ = [
        ("length", ctypes.c_uint32),
        ("descriptor", ctypes.c_void_p),
        ("inherit_handle", ctypes.c_int32),
    ]


_P = ctypes.c_void_p
_PP = ctypes.POINTER(ctypes.c_void_p)
_U32 = ctypes.c_uint32


class _Api:
    """advapi32/kernel32 entry points with exact argument types (64-bit handles and pointers)."""

    def __init__(self) -> None:
        adv, k32 = system_dll("advapi32"), system_dll("kernel32")
        self.get_named = adv.GetNamedSecurityInfoW
        self.get_named.argtypes = [ctypes.c_wchar_p, ctypes.c_int, _U32, _PP, _PP, _PP, _PP, _PP]
        self.get_named.restype = _U32
        self.get_handle = adv.GetSecurityInfo
        self.get_handle.argtypes = [_P, ctypes.c_int, _U32, _PP, _PP, _PP, _PP, _PP]
        self.get_handle.restype = _U32
        self.set_file = adv.SetFileSecurityW
        self.set_file.argtypes = [ctypes.c_wchar_p, _U32, _P]
        self.sd_owner = adv.GetSecurityDescriptorOwner
        self.sd_owner.argtypes = [_P, _PP, ctypes.POINTER(ctypes.c_int32)]
        self.sd_dacl = adv.GetSecurityDescriptorDacl
        self.sd_dacl.argtypes = [_P, ctypes.POINTER(ctypes.c_int32), _PP, ctypes.POINTER(ctypes.c_int32)]
        self.get_ace = adv.GetAce
        self.get_ace.argtypes = [_P, _U32, _PP]
        self.valid_sid = adv.IsValidSid
        self.valid_sid.argtypes = [_P]
        self.sid_to_str = adv.ConvertSidToStringSidW
        self.sid_to_str.argtypes = [_P, ctypes.POINTER(ctypes.c_wchar_p)]
        self.sddl_to_sd = adv.ConvertStringSecurityDescriptorToSecurityDescriptorW
        self.sddl_to_sd.argtypes = [ctypes.c_wchar_p, _U32, _PP, ctypes.POINTER(_U32)]
        self.open_token = adv.OpenProcessToken
        self.open_token.argtypes = [_P, _U32, _PP]
        self.token_info = adv.GetTokenInformation
        self.token_info.argtypes = [_P, ctypes.c_int, _P, _U32, ctypes.POINTER(_U32)]
        self.current_process = k32.GetCurrentProcess
        self.current_process.argtypes = []
        self.current_process.restype = _P
        self.close_handle = k32.CloseHandle
        self.close_handle.argtypes = [_P]
        self.local_free = k32.LocalFree
        self.local_free.argtypes = [_P]
        self.local_free.restype = _P
        self.create_dir = k32.CreateDirectoryW
        self.create_dir.argtypes = [ctypes.c_wchar_p, ctypes.POINTER(_SecurityAttributes)]


def _error(what: str, code: int, path: Path | None = None) -> OSError:
    # With a winerror, Windows' CPython picks the matching subclass (FileNotFoundError, ...).
    return OSError(None, f"{what} failed (Windows error {code})", None if path is None else str(path), code)


def _last_error() -> int:
    code: int = ctypes.get_last_error()  # type: ignore[attr-defined]
    return code


def _sid_string(api: _Api, sid: int | None) -> str | None:
    if not sid or not api.valid_sid(sid):
        return None
    text = ctypes.c_wchar_p()
    if not api.sid_to_str(sid, ctypes.byref(text)):
        raise _error("ConvertSidToStringSidW", _last_error())
    try:
        return text.value
    finally:
        api.local_free(ctypes.cast(text, ctypes.c_void_p))


def read_descriptor(descriptor: int) -> FileSecurity:
    """Owner and DACL of a security descriptor in memory (self-relative or absolute)."""
    return _read_descriptor(_Api(), descriptor)


def _read_descriptor(api: _Api, descriptor: int) -> FileSecurity:
    owner = ctypes.c_void_p()
    defaulted = ctypes.c_int32()
    if not api.sd_owner(descriptor, ctypes.byref(owner), ctypes.byref(defaulted)):
        raise _error("GetSecurityDescriptorOwner", _last_error())
    present = ctypes.c_int32()
    acl = ctypes.c_void_p()
    if not api.sd_dacl(descriptor, ctypes.byref(present), ctypes.byref(acl), ctypes.byref(defaulted)):
        raise _error("GetSecurityDescriptorDacl", _last_error())
    owner_sid = _sid_string(api, owner.value)
    if not present.value or not acl.value:
        return FileSecurity(owner_sid, None)
    # ACL header: revision, sbz1, size (u16), ace count (u16), sbz2.
    count = ctypes.c_uint16.from_address(acl.value + 4).value
    aces: list[Ace] = []
    for index in range(count):
        entry = ctypes.c_void_p()
        if not api.get_ace(acl.value, index, ctypes.byref(entry)) or not entry.value:
            raise _error("GetAce", _last_error())
        header = _AceHeader.from_address(entry.value)
        if header.type in _SID_AFTER_MASK:
            body = _AllowAce.from_address(entry.value)
            sid = _sid_string(api, entry.value + 8)
            aces.append(Ace(header.type, header.flags, body.mask, sid))
        else:
            aces.append(Ace(header.type, header.flags, 0, None))
    return FileSecurity(owner_sid, tuple(aces))


def _take_descriptor(api: _Api, descriptor: ctypes.c_void_p) -> FileSecurity:
    try:
        return _read_descriptor(api, descriptor.value or 0)
    finally:
        api.local_free(descriptor)


def security_of_path(path: Path) -> FileSecurity:
    api = _Api()
    descriptor = ctypes.c_void_p()
    code = api.get_named(
        str(path), _SE_FILE_OBJECT, _OWNER_INFO | _DACL_INFO, None, None, None, None, ctypes.byref(descriptor)
    )
    if code:
        raise _error("GetNamedSecurityInfoW", code, path)
    return _take_descriptor(api, descriptor)


def security_of_fd(fd: int) -> FileSecurity:
    """Owner and DACL of the file behind an open C runtime descriptor (the file read is the file checked)."""
    import msvcrt

    handle: int = msvcrt.get_osfhandle(fd)  # type: ignore[attr-defined]
    api = _Api()
    descriptor = ctypes.c_void_p()
    code = api.get_handle(
        handle, _SE_FILE_OBJECT, _OWNER_INFO | _DACL_INFO, None, None, None, None, ctypes.byref(descriptor)
    )
    if code:
        raise _error("GetSecurityInfo", code)
    return _take_descriptor(api, descriptor)


def security_of_sddl(sddl: str) -> FileSecurity:
    """Parse an SDDL string with Windows' own parser and read it as a file's descriptor would be read."""
    api = _Api()
    return _take_descriptor(api, _descriptor_from_sddl(api, sddl))


def _descriptor_from_sddl(api: _Api, sddl: str) -> ctypes.c_void_p:
    descriptor = ctypes.c_void_p()
    if not api.sddl_to_sd(sddl, _SDDL_REVISION_1, ctypes.byref(descriptor), None):
        raise _error("ConvertStringSecurityDescriptorToSecurityDescriptorW", _last_error())
    return descriptor


def current_user_sid() -> str:
    """The user SID of this process's token (not the name in the environment, which anyone can set)."""
    api = _Api()
    token = ctypes.c_void_p()
    if not api.open_token(api.current_process(), _TOKEN_QUERY, ctypes.byref(token)):
        raise _error("OpenProcessToken", _last_error())
    try:
        needed = _U32()
        api.token_info(token, _TOKEN_USER_CLASS, None, 0, ctypes.byref(needed))
        buffer = ctypes.create_string_buffer(max(needed.value, ctypes.sizeof(_TokenUser)))
        if not api.token_info(token, _TOKEN_USER_CLASS, buffer, len(buffer), ctypes.byref(needed)):
            raise _error("GetTokenInformation", _last_error())
        sid = _sid_string(api, _TokenUser.from_buffer(buffer).sid)
    finally:
        api.close_handle(token)
    if sid is None:
        raise _error("GetTokenInformation", 1337)  # ERROR_INVALID_SID
    return sid


def create_private_dir(path: Path) -> None:
    """Create one directory whose protected DACL children inherit; FileExistsError if it exists."""
    api = _Api()
    descriptor = _descriptor_from_sddl(api, private_sddl(current_user_sid(), is_dir=True))
    try:
        attributes = _SecurityAttributes(ctypes.sizeof(_SecurityAttributes), descriptor.value, 0)
        if not api.create_dir(str(path), ctypes.byref(attributes)):
            raise _error("CreateDirectoryW", _last_error(), path)
    finally:
        api.local_free(descriptor)


def make_private(path: Path, *, is_dir: bool) -> None:
    """Replace the DACL of an existing file or directory with the private one, inheritance cut."""
    _set_dacl(path, private_sddl(current_user_sid(), is_dir=is_dir))


def service_sid(name: str) -> str:
    """The SID of the virtual account NT SERVICE\\<name>: S-1-5-80- and the SHA-1 of the upper-cased
    UTF-16LE name as five little-endian words (how Windows derives per-service SIDs)."""
    digest = hashlib.sha1(name.upper().encode("utf-16-le"), usedforsecurity=False).digest()
    return "S-1-5-80-" + "-".join(str(w) for w in struct.unpack("<5I", digest))


def system_only_sddl(extra_sids: Sequence[str] = ()) -> str:
    """Protected DACL for a service's state directory: full control for SYSTEM, Administrators and
    ``extra_sids`` (a service's virtual account), inherited by sub-folders and files."""
    return "D:P" + "".join(f"(A;OICI;FA;;;{t})" for t in ("SY", "BA", *extra_sids))


def restrict_dir(path: Path, extra_sids: Sequence[str] = ()) -> None:
    """Replace ``path``'s DACL with :func:`system_only_sddl` (``midbox service install``)."""
    _set_dacl(path, system_only_sddl(extra_sids))


def _set_dacl(path: Path, sddl: str) -> None:
    """SetFileSecurityW rather than SetNamedSecurityInfoW: it writes exactly the given protected DACL
    (Wine 8's SetNamedSecurityInfoW adds the parent's entries back despite the protected flag)."""
    api = _Api()
    descriptor = _descriptor_from_sddl(api, sddl)
    try:
        if not api.set_file(str(path), _DACL_INFO | _PROTECTED_DACL_INFO, descriptor):
            raise _error("SetFileSecurityW", _last_error(), path)
    finally:
        api.local_free(descriptor)
