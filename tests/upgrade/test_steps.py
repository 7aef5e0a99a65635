"""The upgrade's steps one by one, without a supervisor: what is refused, and what is never touched."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from appliance import limits
from appliance.errors import UsageError
from appliance.upgrade import auditq
from appliance.upgrade.files import extract_binary, keep_and_swap, restore, sha256_file
from appliance.upgrade.flow import release_version
from appliance.upgrade.manager import Restarter
from appliance.upgrade.state import UpgradeError, load, state_path, upgrade_dir
from appliance.upgrade.version import is_downgrade, parse_version
from hardening.audit import open_audit_log
from hardening.release import ReleaseLimits, parse_public_key, verify_bundle
from tests.support.cli import ROOT, child_env
from tests.support.running import audit_entries
from tests.upgrade.helpers import launcher, make_bundle, release_key

CAPS = ReleaseLimits(limits.MAX_BUNDLE_BYTES, limits.MAX_BUNDLE_MEMBER_BYTES, limits.MAX_BUNDLE_MEMBERS)


def run_upgrade(state_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "appliance", "upgrade", "--state-dir", str(state_dir), *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=child_env(),
        check=False,
    )


def test_versions_compare_as_numbers_and_a_reinstall_counts_as_a_downgrade() -> None:
    assert not is_downgrade("0.9.9", "0.10.0")
    assert is_downgrade("0.10.0", "0.9.9")
    assert not is_downgrade("1.0.0rc1", "1.0.0") and is_downgrade("1.0.0", "1.0.0rc2")
    assert not is_downgrade("1.0.0a2", "1.0.0b1") and not is_downgrade("1.0.0b1", "1.0.0rc1")
    assert is_downgrade("1.2.0", "1.2") and is_downgrade("1.2.0", "1.2.0")
    assert not is_downgrade("1.2", "1.2.0.1")
    for bad in ("", "v1.2", "1.2.3-beta", "1..2", "1.2.3\n", "1" * 20):
        with pytest.raises(UsageError, match="is not a release version"):
            parse_version(bad)


def test_a_tampered_bundle_is_refused_and_audited_and_nothing_is_touched(
    tmp_path: Path, state_dir: Path
) -> None:
    pem, pub = release_key(tmp_path)
    bundle = make_bundle(tmp_path, "0.2.0", launcher("0.2.0"), pem)
    data = bytearray(bundle.read_bytes())
    data[len(data) // 2] ^= 0x01
    bundle.write_bytes(bytes(data))
    binary = tmp_path / "bin" / "midbox"
    binary.parent.mkdir()
    binary.write_text(launcher("0.1.0"))
    before = sorted(p.name for p in binary.parent.iterdir())
    done = run_upgrade(state_dir, "--bundle", str(bundle), "--pubkey", str(pub), "--binary", str(binary))
    assert done.returncode == 1
    assert done.stderr.startswith("midbox: ") and len(done.stderr.strip().splitlines()) == 1
    after = sorted(p.name for p in binary.parent.iterdir() if p.name != ".midbox-upgrade.lock")
    assert binary.read_text() == launcher("0.1.0") and after == before
    assert not state_path(binary).exists()
    [entry] = [e for e in audit_entries(state_dir) if e["event"].startswith("upgrade.")]
    assert entry["event"] == "upgrade.refused" and "queued_at" not in entry["fields"]  # the log was free
    assert entry["fields"]["bundle_sha256"] == sha256_file(bundle)


def test_a_bundle_signed_by_another_key_or_for_another_platform_is_refused(
    tmp_path: Path, state_dir: Path
) -> None:
    pem, pub = release_key(tmp_path)
    (tmp_path / "other").mkdir()
    _, other_pub = release_key(tmp_path / "other")
    bundle = make_bundle(tmp_path, "0.2.0", launcher("0.2.0"), pem)
    binary = tmp_path / "midbox"
    binary.write_text(launcher("0.1.0"))
    done = run_upgrade(
        state_dir, "--bundle", str(bundle), "--pubkey", str(other_pub), "--binary", str(binary)
    )
    assert done.returncode == 1 and "not by the release key" in done.stderr
    windows_bundle = make_bundle(tmp_path, "0.2.1", launcher("0.2.1"), pem, "windows-x86_64")
    done = run_upgrade(
        state_dir, "--bundle", str(windows_bundle), "--pubkey", str(pub), "--binary", str(binary)
    )
    assert done.returncode == 1, done.stderr
    assert (
        "the bundle is for windows-x86_64, this host is linux-x86_64: use the linux-x86_64 bundle"
        in done.stderr
    )
    assert binary.read_text() == launcher("0.1.0")
    refused = [e["fields"]["reason"] for e in audit_entries(state_dir) if e["event"] == "upgrade.refused"]
    assert len(refused) == 2 and "windows-x86_64" in refused[1]
    release = verify_bundle(bundle, parse_public_key(pub.read_bytes()), CAPS)
    assert release_version(release) == ("0.2.0", "linux-x86_64")
    windows = dataclasses.replace(
        release, trusted_comment=release.trusted_comment.replace("linux", "windows")
    )
    assert release_version(windows)[1] == "windows-x86_64"
    for comment in ("timestamp:1\tfile:SHA256SUMS\tsomething else", "midbox 0.2.0 linux-x86_64"):
        with pytest.raises(UpgradeError, match="names no midbox version"):
            release_version(dataclasses.replace(release, trusted_comment=comment))


def test_usage_mistakes_name_the_fix(tmp_path: Path, state_dir: Path) -> None:
    missing = run_upgrade(state_dir, "--pubkey", "k", "--binary", str(tmp_path))
    assert missing.returncode == 2 and "give --bundle and --pubkey" in missing.stderr
    pem, pub = release_key(tmp_path)
    bundle = make_bundle(tmp_path, "0.2.0", launcher("0.2.0"), pem)
    source = run_upgrade(state_dir, "--bundle", str(bundle), "--pubkey", str(pub))
    assert source.returncode == 2 and "give --binary" in source.stderr
    assert "give --binary" in run_upgrade(state_dir, "--resume").stderr
    (tmp_path / "midbox").write_text("installed")
    deadline = run_upgrade(
        state_dir,
        "--bundle",
        str(bundle),
        "--pubkey",
        str(pub),
        "--deadline",
        "0",
        "--binary",
        str(tmp_path / "midbox"),
    )
    assert deadline.returncode == 2 and "--deadline must be 1..3600 seconds" in deadline.stderr
    resume = run_upgrade(state_dir, "--resume", "--binary", str(tmp_path / "midbox"))
    assert resume.returncode == 0 and resume.stdout.strip() == "no upgrade to finish"


def test_one_upgrader_at_a_time(tmp_path: Path, state_dir: Path) -> None:
    pem, pub = release_key(tmp_path)
    bundle = make_bundle(tmp_path, "0.2.0", launcher("0.2.0"), pem)
    binary = tmp_path / "midbox"
    binary.write_text(launcher("0.1.0"))
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; from appliance.upgrade.state import "
         "upgrade_lock\nwith upgrade_lock(Path(sys.argv[1])):\n print('held', flush=True); time.sleep(30)",
         str(binary)],
        cwd=ROOT, env=child_env(), stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        busy = run_upgrade(state_dir, "--bundle", str(bundle), "--pubkey", str(pub), "--binary", str(binary))
        assert busy.returncode == 1
        assert f"another midbox upgrade of {binary} is running: wait for it to finish" in busy.stderr
        assert binary.read_text() == launcher("0.1.0")
    finally:
        holder.kill()
        holder.wait()


def test_the_binary_is_checked_again_when_extracted(tmp_path: Path) -> None:
    pem, pub = release_key(tmp_path)
    bundle = make_bundle(tmp_path, "0.2.0", launcher("0.2.0"), pem)
    release = verify_bundle(bundle, parse_public_key(pub.read_bytes()), CAPS)
    dest = tmp_path / ".midbox.upgrade-new"
    assert extract_binary(bundle, release, "midbox", dest, CAPS.member_bytes) == dict(release.files)["midbox"]
    assert dest.read_text() == launcher("0.2.0") and dest.stat().st_mode & 0o777 == 0o755
    dest.unlink()
    swapped = dataclasses.replace(release, files=tuple((n, "0" * 64) for n, _ in release.files))
    with pytest.raises(
        UpgradeError, match="changed after the bundle was verified: download the bundle again"
    ):
        extract_binary(bundle, swapped, "midbox", dest, CAPS.member_bytes)
    assert not dest.exists()
    with pytest.raises(UpgradeError, match="larger than 10 bytes"):
        extract_binary(bundle, release, "midbox", dest, 10)
    assert not dest.exists()
    with pytest.raises(UpgradeError, match="holds no midbox.exe"):
        extract_binary(bundle, release, "midbox.exe", dest, CAPS.member_bytes)


def test_swap_keeps_the_previous_binary_and_restore_is_idempotent(tmp_path: Path) -> None:
    target, previous, staged = tmp_path / "midbox", tmp_path / "midbox.previous", tmp_path / ".midbox.new"
    target.write_text("old")
    staged.write_text("new")
    previous.write_text("an older one, replaced")
    old_sha = sha256_file(target)
    keep_and_swap(target, previous, staged)
    assert target.read_text() == "new" and previous.read_text() == "old" and not staged.exists()
    restore(target, previous, old_sha)
    assert target.read_text() == "old"
    restore(target, previous, old_sha)  # a resumed rollback runs it again: nothing left to do, no error
    assert target.read_text() == "old"
    target.write_text("new again")
    with pytest.raises(UpgradeError, match="previous binary .* is gone: reinstall midbox"):
        restore(target, previous, old_sha)


def test_restart_failures_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(UpgradeError, match="sh exited 3 \\(no such service\\): check the service"):
        Restarter("command", "midbox", ("sh", "-c", "echo 'no such service'; exit 3")).restart()
    with pytest.raises(UpgradeError, match="failed \\(FileNotFoundError\\)"):
        Restarter("command", "midbox", (str(tmp_path / "nothing"),)).restart()
    if not Path("/run/systemd/system").is_dir():
        with pytest.raises(UpgradeError, match="systemd does not run on this host: give --restart-command"):
            Restarter("systemd", "midbox").restart()
    with pytest.raises(UpgradeError, match="only on Windows"):
        Restarter("scm", "midbox").restart()


def test_a_damaged_or_foreign_state_file_is_refused_with_the_fix(tmp_path: Path) -> None:
    target = tmp_path / "midbox"
    path = state_path(target)
    assert path == tmp_path / ".midbox-upgrade.json"  # beside the binary, not in the service's state dir
    good = {
        "phase": "restarted", "target": str(target), "previous": f"{target}.previous", "staged": "/x/.n",
        "from_version": "0.1.0", "to_version": "0.2.0", "new_sha256": "a" * 64, "previous_sha256": "b" * 64,
        "bundle_sha256": "c" * 64, "key_id": "K", "manager": "command", "service": "midbox",
        "restart_command": ["sv", "restart", "x"], "deadline_s": 60, "begun_at": 1.0, "restarted_at": 2.0,
        "reason": "",
    }  # fmt: skip
    path.write_text(json.dumps(good))
    state = load(target)
    assert state is not None and state.restart_command == ("sv", "restart", "x") and state.deadline_s == 60.0
    for bad in (
        {**good, "extra": 1},
        {**good, "phase": "half-done"},
        {**good, "deadline_s": True},
        {**good, "restart_command": "sv restart x"},
        {k: v for k, v in good.items() if k != "target"},
    ):
        path.write_text(json.dumps(bad))
        with pytest.raises(
            UpgradeError, match="is damaged .*check which binary is installed, then remove the file"
        ):
            load(target)
    path.write_bytes(b" " * (limits.MAX_UPGRADE_STATE_BYTES + 1))
    with pytest.raises(UpgradeError, match="is damaged"):
        load(target)
    path.write_text(json.dumps({**good, "target": "/usr/local/bin/midbox"}))
    with pytest.raises(UpgradeError, match="is about /usr/local/bin/midbox, not .*: remove the file"):
        load(target)
    # Root moves files and runs the restart command it names: a file others could write is not acted on.
    path.write_text(json.dumps({**good, "restart_command": ["sh", "-c", "evil"]}))
    path.chmod(0o664)
    with pytest.raises(UpgradeError, match="writable by others: an upgrader does not act on it"):
        load(target)
    path.chmod(0o644)
    if os.geteuid() == 0:
        os.chown(path, 65534, 65534)  # nobody: the service user, say, rewrote it
        with pytest.raises(UpgradeError, match="was written by uid 65534"):
            load(target)
    path.unlink()
    path.symlink_to(tmp_path / "elsewhere.json")
    with pytest.raises(UpgradeError, match="cannot read"):
        load(target)


def test_the_queue_gives_the_appliance_only_upgrade_entries(state_dir: Path) -> None:
    holder = open_audit_log(state_dir)  # the running appliance holds the log
    try:
        outcome = auditq.record(state_dir, "upgrade.resumed", {"phase": "swapped", "to_version": "0.2.0"})
        assert outcome == "queued"
        with pytest.raises(Exception, match="lacks field"):
            auditq.record(state_dir, "upgrade.resumed", {"phase": "swapped"})
        pending = upgrade_dir(state_dir) / auditq.PENDING_NAME
        forged = {"event": "config.accepted", "fields": {"config_version": 9}, "queued_at": "x"}
        with pending.open("a") as fh:
            fh.write(json.dumps(forged) + "\n" + "{torn\n")
        assert auditq.drain(state_dir, holder) == 1
        assert not pending.exists() and auditq.drain(state_dir, holder) == 0
    finally:
        holder.close()
    entries = [e for e in audit_entries(state_dir) if not e["event"].startswith("audit.")]
    assert [e["event"] for e in entries] == ["upgrade.resumed", "error", "error"]
    assert entries[0]["fields"]["queued_at"].endswith("Z")
    assert "not an upgrade entry" in entries[1]["fields"]["message"]


def test_the_installed_version_comes_from_the_last_upgrade_not_from_the_service_users_status_file(
    tmp_path: Path, state_dir: Path
) -> None:
    pem, pub = release_key(tmp_path)
    bundle = make_bundle(tmp_path, "0.2.0", launcher("0.2.0"), pem)
    binary = tmp_path / "midbox"
    binary.write_text(launcher("0.3.0"))
    # The service user writes status.json; claiming an old version must not let a downgrade through.
    (state_dir / "status.json").write_text(json.dumps({"version": "0.0.1"}))
    last = {
        "phase": "confirmed", "target": str(binary), "previous": str(tmp_path / "midbox.previous"),
        "staged": str(tmp_path / ".midbox.upgrade-new"), "from_version": "0.1.0", "to_version": "0.3.0",
        "new_sha256": sha256_file(binary), "previous_sha256": "b" * 64, "bundle_sha256": "c" * 64,
        "key_id": "K", "manager": "command", "service": "midbox", "restart_command": ["true"],
        "deadline_s": 60, "begun_at": 1.0, "restarted_at": 2.0, "reason": "",
    }  # fmt: skip
    state_path(binary).write_text(json.dumps(last))
    done = run_upgrade(state_dir, "--bundle", str(bundle), "--pubkey", str(pub), "--binary", str(binary))
    assert done.returncode == 1
    assert "0.2.0 is not newer than the running 0.3.0: pass --allow-downgrade" in done.stderr
    assert binary.read_text() == launcher("0.3.0")


def test_host_platform_is_what_the_platform_module_says() -> None:
    # host_platform avoids the platform module on Linux (the binary leaves it out, issue 19)
    import platform

    from appliance.upgrade.flow import host_platform

    machine = platform.machine().lower()
    arch = "x86_64" if machine in ("x86_64", "amd64") else machine
    assert host_platform() == f"{'windows' if os.name == 'nt' else 'linux'}-{arch}"
