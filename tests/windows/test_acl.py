"""Owner/DACL checks of hardening.perms, run in Windows' CPython under Wine.

What Wine 8 (upstream, as packaged by Debian) really does with file security, shown by the first
test: it keeps no descriptor of its own (no ``user.wine.sd`` xattr; that is a wine-staging patch).
It derives one from the Unix owner and mode on every read: owner = the user's SID if the Unix owner
is the Wine user, else ANONYMOUS LOGON; DACL = SYSTEM full, the owner per the user bits, Everyone per
the "other" bits. Setting a DACL maps it back to mode bits; entries for other SIDs, NULL DACLs and
owner changes are not kept. So on files these tests can show: private accepted, Everyone refused
(set through Windows or by chmod), foreign owner refused (by chown). Users, Authenticated Users,
another user's SID and NULL DACLs are shown on descriptors that Windows' own advapi32 parses and
midbox's reader walks, the same code that reads a file's descriptor.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.windows.conftest import WinPy, result_of, wine_path

CHECKS = """
import json, sys
from pathlib import Path
from hardening import perms, winacl

def refusal(fn, *args, **kwargs):
    try:
        fn(*args, **kwargs)
    except perms.PermissionsError as e:
        return str(e)
    return None
"""


def test_what_wine_keeps_of_a_file_security_descriptor(winpy: WinPy, tmp_path: Path) -> None:
    names = ["everyone", "users", "other", "nulldacl", "owner"]
    for name in names:
        (tmp_path / name).write_bytes(b"x")
        (tmp_path / name).chmod(0o600)
    out = result_of(
        winpy(
            CHECKS + "from tests.windows.acl_helpers import set_sddl, set_null_dacl\n"
            "d = Path(sys.argv[1])\n"
            "set_sddl(str(d / 'everyone'), 'D:P(A;;FA;;;SY)(A;;FA;;;OW)(A;;FR;;;WD)')\n"
            "set_sddl(str(d / 'users'), 'D:P(A;;FA;;;SY)(A;;FA;;;OW)(A;;FR;;;BU)')\n"
            "set_sddl(str(d / 'other'), 'D:P(A;;FA;;;SY)(A;;FA;;;OW)(A;;FR;;;S-1-5-21-7-7-7-1002)')\n"
            "set_null_dacl(str(d / 'nulldacl'))\n"
            "set_sddl(str(d / 'owner'), 'O:BUD:P(A;;FA;;;SY)(A;;FA;;;OW)')\n"
            "read = {n: winacl.security_of_path(d / n) for n in sys.argv[2:]}\n"
            "print(json.dumps({'user': winacl.current_user_sid(), 'read': {n: [s.owner, "
            "[a.sid for a in s.dacl or ()]] for n, s in read.items()},\n"
            " 'nulldacl_refused': refusal(perms.read_private_file, d / 'nulldacl', 10)}))",
            wine_path(tmp_path),
            *names,
        )
    )
    user, read = out["user"], out["read"]
    assert user.startswith("S-1-5-21-")
    # Everyone survives, as the "other" mode bits.
    assert read["everyone"] == [user, ["S-1-5-18", user, "S-1-1-0"]]
    assert (tmp_path / "everyone").stat().st_mode & 0o004
    # A NULL DACL becomes mode 0777 and comes back as Everyone: refused, though not as "NULL DACL".
    assert read["nulldacl"] == [user, ["S-1-5-18", user, "S-1-1-0"]]
    assert (tmp_path / "nulldacl").stat().st_mode & 0o777 == 0o777
    assert "Everyone (S-1-1-0)" in out["nulldacl_refused"]
    # Users and another user's SID are dropped (Users only as Unix group bits), the owner stays.
    assert "S-1-5-32-545" not in read["users"][1]
    assert "S-1-5-21-7-7-7-1002" not in read["other"][1]
    assert read["owner"][0] == user
    for name in names:
        assert not [a for a in os.listxattr(tmp_path / name) if a.startswith("user.wine")]


def test_a_directory_midbox_creates_is_private_and_so_are_its_secret_files(
    winpy: WinPy, tmp_path: Path
) -> None:
    out = result_of(
        winpy(
            CHECKS + "from hardening import atomic\n"
            "state = Path(sys.argv[1]) / 'a' / 'state'\n"
            "perms.ensure_private_dir(state)\n"
            "perms.ensure_private_dir(state)\n"
            "atomic.atomic_write(state / 'secret', b'pw')\n"
            "perms.check_private_file(state / 'secret')\n"
            "(state / 'plain').write_bytes(b'x')\n"
            "before = refusal(perms.check_private_file, state / 'plain')\n"
            "perms.make_private(state / 'plain')\n"
            "sd = winacl.security_of_path(state)\n"
            "print(json.dumps({'user': winacl.current_user_sid(), 'owner': sd.owner,\n"
            "  'aces': [[a.type, a.flags, a.sid] for a in sd.dacl],\n"
            "  'read': perms.read_private_file(state / 'secret', 10).decode(),\n"
            "  'plain_before': before, 'plain_after': refusal(perms.check_private_file, state / 'plain'),\n"
            "  'dir': refusal(perms.check_private_dir, state),\n"
            "  'missing': refusal(perms.check_private_dir, state / 'nope')}))",
            wine_path(tmp_path),
        )
    )
    user = out["user"]
    assert out["owner"] == user
    assert out["dir"] is None and out["read"] == "pw" and out["plain_after"] is None
    trusted = {"S-1-5-18", "S-1-5-32-544", user}
    assert {sid for _, _, sid in out["aces"]} <= trusted and user in {sid for _, _, sid in out["aces"]}
    assert all(kind == 0 and flags & 0x3 == 0x3 for kind, flags, _ in out["aces"])  # allow, OI|CI
    nope = wine_path(tmp_path / "a" / "state" / "nope")
    assert out["missing"] == (
        f'{nope} does not exist; create it with: mkdir "{nope}"  then: icacls "{nope}" /inheritance:r '
        f"/grant:r *S-1-5-18:(OI)(CI)F *S-1-5-32-544:(OI)(CI)F *{user}:(OI)(CI)F"
    )
    # Wine does not apply inheritance: a file made without make_private is world-readable there.
    assert out["plain_before"] is not None and "Everyone (S-1-1-0)" in out["plain_before"]


def test_an_everyone_entry_is_refused_with_the_icacls_fix(winpy: WinPy, tmp_path: Path) -> None:
    for name in ("by-windows", "by-chmod"):
        (tmp_path / name).write_bytes(b"secret")
    (tmp_path / "by-chmod").chmod(0o644)
    (tmp_path / "dir").mkdir(mode=0o755)
    out = result_of(
        winpy(
            CHECKS + "from tests.windows.acl_helpers import set_sddl\n"
            "d = Path(sys.argv[1])\n"
            "set_sddl(str(d / 'by-windows'), 'D:P(A;;FA;;;SY)(A;;FA;;;OW)(A;;FR;;;WD)')\n"
            "out = {'user': winacl.current_user_sid()}\n"
            "for n in ('by-windows', 'by-chmod'):\n"
            "    out[n] = [refusal(perms.check_private_file, d / n),\n"
            "              refusal(perms.read_private_file, d / n, 100)]\n"
            "out['dir'] = refusal(perms.check_private_dir, d / 'dir')\n"
            "perms.make_private(d / 'by-windows')\n"
            "out['fixed'] = refusal(perms.read_private_file, d / 'by-windows', 100)\n"
            "print(json.dumps(out))",
            wine_path(tmp_path),
        )
    )
    user = out["user"]
    for name in ("by-windows", "by-chmod"):
        p = wine_path(tmp_path / name)
        want = (
            f'{p} grants access to Everyone (S-1-1-0); run: icacls "{p}" /remove:g *S-1-1-0  then: '
            f'icacls "{p}" /inheritance:r /grant:r *S-1-5-18:F *S-1-5-32-544:F *{user}:F'
        )
        assert out[name] == [want, want]  # by path, and on the handle read_private_file holds
    d = wine_path(tmp_path / "dir")
    assert out["dir"] == (
        f'{d} grants access to Everyone (S-1-1-0); run: icacls "{d}" /remove:g *S-1-1-0  then: '
        f'icacls "{d}" /inheritance:r /grant:r *S-1-5-18:(OI)(CI)F *S-1-5-32-544:(OI)(CI)F *{user}:(OI)(CI)F'
    )
    assert out["fixed"] is None


@pytest.mark.skipif(os.geteuid() != 0, reason="making a file owned by another user needs root")
def test_a_file_owned_by_someone_else_is_refused(winpy: WinPy, tmp_path: Path) -> None:
    (tmp_path / "key").write_bytes(b"secret")
    (tmp_path / "key").chmod(0o600)
    (tmp_path / "dir").mkdir(mode=0o700)
    for name in ("key", "dir"):
        os.chown(tmp_path / name, 4321, 4321)
    out = result_of(
        winpy(
            CHECKS + "d = Path(sys.argv[1])\n"
            "print(json.dumps({'user': winacl.current_user_sid(),\n"
            "  'file': refusal(perms.check_private_file, d / 'key'),\n"
            "  'read': refusal(perms.read_private_file, d / 'key', 100),\n"
            "  'dir': refusal(perms.check_private_dir, d / 'dir')}))",
            wine_path(tmp_path),
        )
    )
    user = out["user"]
    for key, name in (("file", "key"), ("read", "key"), ("dir", "dir")):
        p = wine_path(tmp_path / name)
        assert out[key].startswith(
            f"{p} is owned by ANONYMOUS LOGON (S-1-5-7), not by the user running midbox ({user}), "
            f'SYSTEM or Administrators; run: icacls "{p}" /setowner *{user}  then: '
        )


def test_the_rules_on_descriptors_windows_parses(winpy: WinPy) -> None:
    cases = {
        "private": "O:SYD:P(A;;FA;;;SY)(A;;FA;;;BA)(A;;FA;;;{u})(D;;FA;;;WD)",
        "admins_own": "O:BAD:P(A;;FA;;;{u})",
        "users": "O:{u}D:P(A;;FA;;;SY)(A;;FA;;;{u})(A;;FR;;;BU)",
        "authenticated": "O:{u}D:P(A;;FA;;;{u})(A;;FR;;;AU)",
        "other_user": "O:{u}D:P(A;;FA;;;{u})(A;;FR;;;S-1-5-21-7-7-7-1002)",
        "inherit_only_everyone": "O:{u}D:P(A;;FA;;;{u})(A;OICIIO;FA;;;WD)",
        "owner_users": "O:BUD:P(A;;FA;;;{u})",
    }
    out = result_of(
        winpy(
            CHECKS + "from tests.windows.acl_helpers import null_dacl_descriptor\n"
            "u = winacl.current_user_sid()\n"
            f"cases = {cases!r}\n"
            "p = Path('C:/ProgramData/midbox/host.key')\n"
            "out = {n: refusal(perms._check_windows, lambda s=s: winacl.security_of_sddl(s.format(u=u)), p,\n"
            "                  is_dir=False) for n, s in cases.items()}\n"
            "keep, address = null_dacl_descriptor(u)\n"
            "null = winacl.read_descriptor(address)\n"
            "out['null_dacl'] = refusal(perms._check_windows, lambda: null, p, is_dir=False)\n"
            "out['null_read'] = [null.owner == u, null.dacl]\n"
            "made = winacl.security_of_sddl(winacl.private_sddl(u, is_dir=True)).dacl\n"
            "out['made'] = [[a.type, a.flags, a.mask, a.sid] for a in made]\n"
            "print(json.dumps(out))"
        )
    )
    assert out["private"] is None and out["admins_own"] is None
    for case, named in (
        ("users", "BUILTIN\\Users (S-1-5-32-545)"),
        ("authenticated", "Authenticated Users (S-1-5-11)"),
        ("other_user", "S-1-5-21-7-7-7-1002"),
        ("inherit_only_everyone", "Everyone (S-1-1-0)"),
    ):
        sid = named.rsplit("(", 1)[-1].rstrip(")")
        assert out[case].startswith(
            f"C:\\ProgramData\\midbox\\host.key grants access to {named}; run: icacls "
        )
        assert f"/remove:g *{sid}  then: " in out[case]
    assert "is owned by BUILTIN\\Users (S-1-5-32-545)" in out["owner_users"]
    # The DACL ensure_private_dir and make_private hand to Windows, as Windows' own parser builds it.
    user = out["made"][2][3]
    assert user.startswith("S-1-5-21-")
    assert out["made"] == [[0, 3, 0x1F01FF, sid] for sid in ("S-1-5-18", "S-1-5-32-544", user)]
    assert out["null_read"] == [True, None]
    assert out["null_dacl"].startswith(
        "C:\\ProgramData\\midbox\\host.key has a NULL DACL, which gives everyone full access; run: icacls "
    )
    assert "/inheritance:r /grant:r *S-1-5-18:F" in out["null_dacl"]
