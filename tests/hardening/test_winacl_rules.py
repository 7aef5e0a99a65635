"""The Windows ownership/DACL rules, on descriptors built here (the Windows calls run in tests/windows)."""

from __future__ import annotations

from pathlib import PureWindowsPath

import pytest

from hardening import winacl
from hardening.winacl import Ace, FileSecurity

USER = "S-1-5-21-1111-2222-3333-1001"
OTHER_USER = "S-1-5-21-1111-2222-3333-1002"
FULL = 0x1F01FF
READ = 0x1200A9
OICI = 0x3
INHERIT_ONLY = 0x8


def allow(sid: str, mask: int = FULL, flags: int = 0) -> Ace:
    return Ace(0x0, flags, mask, sid)


def deny(sid: str) -> Ace:
    return Ace(0x1, 0, FULL, sid)


PRIVATE = (allow(winacl.SYSTEM_SID), allow(winacl.ADMINISTRATORS_SID), allow(USER))


@pytest.mark.parametrize("owner", [USER, winacl.SYSTEM_SID, winacl.ADMINISTRATORS_SID])
def test_private_descriptors_are_accepted(owner: str) -> None:
    assert winacl.problem_of(FileSecurity(owner, PRIVATE), USER) is None
    # Deny entries only take access away, whoever they name.
    assert winacl.problem_of(FileSecurity(owner, (deny("S-1-1-0"), *PRIVATE)), USER) is None
    assert winacl.problem_of(FileSecurity(owner, (allow(USER),)), USER) is None
    assert winacl.problem_of(FileSecurity(owner, ()), USER) is None  # empty DACL: nobody gets in


@pytest.mark.parametrize(
    ("sid", "name"),
    [
        ("S-1-1-0", "Everyone (S-1-1-0)"),
        ("S-1-5-32-545", "BUILTIN\\Users (S-1-5-32-545)"),
        ("S-1-5-11", "Authenticated Users (S-1-5-11)"),
        (OTHER_USER, OTHER_USER),
    ],
)
def test_an_entry_for_anyone_else_is_refused_and_named(sid: str, name: str) -> None:
    for extra in (allow(sid, READ), allow(sid, FULL, OICI | INHERIT_ONLY), Ace(0x9, 0, READ, sid)):
        problem = winacl.problem_of(FileSecurity(USER, (*PRIVATE, extra)), USER)
        assert problem is not None
        assert problem.reason == f"grants access to {name}"
        assert problem.foreign_sids == (sid,)
        assert not problem.bad_owner


def test_every_foreign_sid_is_listed_once() -> None:
    aces = (*PRIVATE, allow("S-1-1-0"), allow("S-1-5-11"), allow("S-1-1-0", READ))
    problem = winacl.problem_of(FileSecurity(USER, aces), USER)
    assert problem is not None and problem.foreign_sids == ("S-1-1-0", "S-1-5-11")


def test_a_null_dacl_is_refused() -> None:
    problem = winacl.problem_of(FileSecurity(USER, None), USER)
    assert problem is not None and "NULL DACL" in problem.reason


@pytest.mark.parametrize("owner", [OTHER_USER, "S-1-5-32-545", "S-1-5-7", None])
def test_a_foreign_or_missing_owner_is_refused(owner: str | None) -> None:
    problem = winacl.problem_of(FileSecurity(owner, PRIVATE), USER)
    assert problem is not None and problem.bad_owner
    assert problem.reason.startswith(f"is owned by {winacl.sid_name(owner)}, not by the user running midbox")


@pytest.mark.parametrize("ace", [Ace(0x5, 0, FULL, None), Ace(0xB, 0, FULL, None), Ace(0x11, 0, 0, None)])
def test_entry_types_midbox_does_not_read_are_refused(ace: Ace) -> None:
    problem = winacl.problem_of(FileSecurity(USER, (*PRIVATE, ace)), USER)
    assert problem is not None and "does not accept" in problem.reason


def test_an_allow_entry_whose_sid_cannot_be_read_is_refused() -> None:
    assert winacl.problem_of(FileSecurity(USER, (Ace(0x0, 0, FULL, None),)), USER) is not None


def test_icacls_fix_for_a_directory_and_a_file() -> None:
    d = PureWindowsPath(r"C:\ProgramData\midbox")
    assert winacl.icacls_fix(d, USER, is_dir=True) == (
        rf'icacls "C:\ProgramData\midbox" /inheritance:r /grant:r *S-1-5-18:(OI)(CI)F '
        rf"*S-1-5-32-544:(OI)(CI)F *{USER}:(OI)(CI)F"
    )
    f = d / "host.key"
    problem = winacl.Problem("x", foreign_sids=("S-1-1-0", "S-1-5-32-545"), bad_owner=True)
    assert winacl.icacls_fix(f, USER, is_dir=False, problem=problem) == (
        rf'icacls "{f}" /setowner *{USER}  then: icacls "{f}" /remove:g *S-1-1-0 *S-1-5-32-545  then: '
        rf'icacls "{f}" /inheritance:r /grant:r *S-1-5-18:F *S-1-5-32-544:F *{USER}:F'
    )


def test_private_sddl() -> None:
    assert winacl.private_sddl(USER, is_dir=True) == (
        f"D:P(A;OICI;FA;;;S-1-5-18)(A;OICI;FA;;;S-1-5-32-544)(A;OICI;FA;;;{USER})"
    )
    assert winacl.private_sddl(USER, is_dir=False) == (
        f"D:P(A;;FA;;;S-1-5-18)(A;;FA;;;S-1-5-32-544)(A;;FA;;;{USER})"
    )
