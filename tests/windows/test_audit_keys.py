"""The audit signing key and the seal key get the owner/DACL check on Windows, under Wine."""

from __future__ import annotations

from pathlib import Path

from tests.windows.conftest import WinPy, result_of, wine_path

EVERYONE_READS = "D:P(A;;FA;;;SY)(A;;FA;;;OW)(A;;FR;;;WD)"


def test_audit_keys_are_created_private_and_refused_when_others_can_read_them(
    winpy: WinPy, tmp_path: Path
) -> None:
    out = result_of(
        winpy(
            "import json, sys\n"
            "from pathlib import Path\n"
            "from hardening import perms, winacl\n"
            "from hardening.audit.errors import SigningKeyError\n"
            "from hardening.audit.seal import SEAL_KEY_FILE, SealKey\n"
            "from hardening.audit.signing import KEY_FILE_NAME, load_or_create_signing_key, load_signing_key\n"
            "from tests.windows.acl_helpers import set_sddl\n"
            "state = Path(sys.argv[1]) / 'state'\n"
            "audit = Path(sys.argv[1]) / 'audit'\n"
            "audit.mkdir()\n"
            "def refusal(fn, *args):\n"
            "    try:\n"
            "        fn(*args)\n"
            "    except SigningKeyError as e:\n"
            "        return str(e)\n"
            "key = load_or_create_signing_key(state)\n"
            "log_id = '0' * 32\n"
            "SealKey.create(audit, log_id)\n"
            "out = {'user': winacl.current_user_sid(), 'same': load_signing_key(state).public_key() == key.public_key(),\n"
            "       'seal_epoch': SealKey.load(audit, log_id).epoch}\n"
            "perms.check_private_dir(state)\n"
            "perms.check_private_file(state / KEY_FILE_NAME)\n"
            "perms.check_private_file(audit / SEAL_KEY_FILE)\n"
            f"set_sddl(str(state / KEY_FILE_NAME), {EVERYONE_READS!r})\n"
            f"set_sddl(str(audit / SEAL_KEY_FILE), {EVERYONE_READS!r})\n"
            "out['signing'] = refusal(load_signing_key, state)\n"
            "out['seal'] = refusal(SealKey.load, audit, log_id)\n"
            "print(json.dumps(out))",
            wine_path(tmp_path),
        )
    )
    assert out["same"] and out["seal_epoch"] == 0
    user = out["user"]
    for case, path in (
        ("signing", tmp_path / "state" / "audit-signing.key"),
        ("seal", tmp_path / "audit" / "seal.key"),
    ):
        p = wine_path(path)
        assert out[case] == (
            f'{p} grants access to Everyone (S-1-1-0); run: icacls "{p}" /remove:g *S-1-1-0  then: '
            f'icacls "{p}" /inheritance:r /grant:r *S-1-5-18:F *S-1-5-32-544:F *{user}:F'
        )
