"""The whole upgrade cycle under a real supervisor (runit's runsv, restarted with ``sv restart``).

Locally built bundles: 0.2.0 (good), 0.1.0 (a downgrade), 0.3.0 (fails to start), 0.3.1 (starts but
never polls). The appliance runs under runsv against the development instance; ``midbox upgrade``
installs 0.2.0 and sees it poll, refuses 0.1.0, installs 0.3.0 and rolls back when runsv reports it
did not come up, installs 0.3.1 and rolls back when no poll arrives within the deadline; 0.2.0 polls
again each time. Every step is in the audit log, in order.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from appliance.health import parse_iso
from appliance.status_file import read_status
from appliance.upgrade.files import sha256_file
from appliance.upgrade.state import load
from tests.helpers import Pki, dev_instance
from tests.signing.helpers import install_trust
from tests.support.cli import ROOT, child_env
from tests.support.running import audit_entries, config_bytes, signed_config
from tests.upgrade.helpers import broken, hung, launcher, make_bundle, release_key

pytestmark = pytest.mark.skipif(
    shutil.which("runsv") is None, reason="runit is not installed (.ci/setup installs it)"
)


@dataclass(frozen=True)
class Host:
    state_dir: Path
    binary: Path
    service: Path
    pub: Path
    pem: Path
    tmp: Path


def upgrade(host: Host, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "appliance",
            "upgrade",
            "--state-dir",
            str(host.state_dir),
            "--binary",
            str(host.binary),
            "--restart-command",
            f"sv restart {host.service}",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env=child_env(),
        check=False,
    )


def polling(state_dir: Path, version: str, since: float, timeout: float = 60) -> dict[str, object]:
    """status.json once ``version`` has polled successfully after ``since``."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        status = read_status(state_dir)
        last_ok = parse_iso(status.get("last_poll_ok")) if status else None
        if status and status.get("version") == version and last_ok is not None and last_ok > since:
            return status
        time.sleep(0.1)
    raise AssertionError(f"{version} did not poll within {timeout} s: {read_status(state_dir)}")


@pytest.fixture
def host(dev_pki: Pki, tmp_path: Path, state_dir: Path) -> Iterator[Host]:
    """midbox 0.1.0 installed at tmp/bin/midbox, run by runsv, polling the development instance."""
    admin = Ed25519PrivateKey.generate()
    install_trust(state_dir, [admin])
    pem, pub = release_key(tmp_path)
    binary = tmp_path / "bin" / "midbox"
    binary.parent.mkdir()
    binary.write_text(launcher("0.1.0"))
    binary.chmod(0o755)
    service = tmp_path / "sv" / "midbox"
    service.mkdir(parents=True)
    with dev_instance(dev_pki, tmp_path / "db.sqlite") as instance:
        config = signed_config(
            tmp_path / "admin", [admin], config_bytes(instance.url, dev_pki, 1, '"1-65535"')
        )
        run = service / "run"
        run.write_text(f"#!/bin/sh\nexec 2>&1\nexec {binary} run --config {config} --state-dir {state_dir}\n")
        run.chmod(0o755)
        with (tmp_path / "runsv.log").open("wb") as out:
            runsv = subprocess.Popen(
                ["runsv", str(service)], stdout=out, stderr=subprocess.STDOUT, env=child_env()
            )
        try:
            polling(state_dir, "0.1.0", 0)
            yield Host(state_dir, binary, service, pub, pem, tmp_path)
        finally:
            subprocess.run(["sv", "-w", "30", "down", str(service)], capture_output=True, check=False)
            runsv.send_signal(signal.SIGTERM)
            try:
                runsv.wait(timeout=30)
            except subprocess.TimeoutExpired:
                runsv.kill()
                runsv.wait()


def test_upgrade_confirms_refuses_a_downgrade_and_rolls_back_a_failed_start(host: Host) -> None:
    good = make_bundle(host.tmp, "0.2.0", launcher("0.2.0"), host.pem)
    older = make_bundle(host.tmp, "0.1.0", launcher("0.1.0"), host.pem)
    bad = make_bundle(host.tmp, "0.3.0", broken("0.3.0"), host.pem)
    stuck = make_bundle(host.tmp, "0.3.1", hung("0.3.1"), host.pem)
    original = sha256_file(host.binary)

    # 0.1.0 -> 0.2.0: verified, swapped, restarted by runsv, confirmed by a poll newer than the restart.
    before = time.time()
    done = upgrade(host, "--bundle", str(good), "--pubkey", str(host.pub), "--deadline", "60")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "upgrade confirmed" in done.stdout
    print(f"0.1.0 -> 0.2.0 under runsv: {time.time() - before:.2f} s, {done.stdout.splitlines()[-1]}")
    status = polling(host.state_dir, "0.2.0", before)
    assert (parse_iso(status["started"]) or 0) > before
    assert host.binary.read_text() == launcher("0.2.0")
    assert sha256_file(host.binary.with_name("midbox.previous")) == original
    assert not host.binary.with_name(".midbox.upgrade-new").exists()
    state = load(host.binary)
    assert state is not None and state.phase == "confirmed" and state.from_version == "0.1.0"

    # 0.2.0 -> 0.1.0 is a downgrade: refused, nothing touched.
    refused = upgrade(host, "--bundle", str(older), "--pubkey", str(host.pub))
    assert refused.returncode == 1
    assert "0.1.0 is not newer than the running 0.2.0: pass --allow-downgrade" in refused.stderr
    assert host.binary.read_text() == launcher("0.2.0")

    # 0.2.0 -> 0.3.0, which cannot start: sv restart says so (on a loaded machine sv may catch the
    # process in its brief life and say "ok"; then the deadline catches it), and 0.2.0 is put back.
    before = time.time()
    failed = upgrade(host, "--bundle", str(bad), "--pubkey", str(host.pub), "--deadline", "30")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "rolling back to 0.2.0" in failed.stdout and "upgrade rolled_back" in failed.stdout
    assert host.binary.read_text() == launcher("0.2.0")
    polling(host.state_dir, "0.2.0", before)
    state = load(host.binary)
    assert state is not None and state.phase == "rolled_back"
    state_of_bad = state
    assert state.reason.startswith(
        ("restart failed: the restart command sv exited 1", "no successful poll by 0.3.0 within 30 s")
    ), state.reason

    # 0.2.0 -> 0.3.1, which starts but never polls: the deadline passes, 0.2.0 is put back and restarted.
    before = time.time()
    failed = upgrade(host, "--bundle", str(stuck), "--pubkey", str(host.pub), "--deadline", "5")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "no successful poll by 0.3.1 within 5 s" in failed.stdout
    took = time.time() - before
    print(f"0.2.0 -> 0.3.1 (never polls, deadline 5 s) rolled back in {took:.2f} s")
    assert 5 <= took < 60
    assert host.binary.read_text() == launcher("0.2.0") and os.access(host.binary, os.X_OK)
    polling(host.state_dir, "0.2.0", before)
    state = load(host.binary)
    assert state is not None and state.phase == "rolled_back" and state.to_version == "0.3.1"

    # The running appliance recorded what the upgrader queued while it held the log.
    end = time.monotonic() + 10
    while time.monotonic() < end:
        events = [e for e in audit_entries(host.state_dir) if e["event"].startswith("upgrade.")]
        if events and events[-1]["event"] == "upgrade.rolled_back":
            break
        time.sleep(0.1)
    names = [e["event"] for e in events]
    if "exited 1" in state_of_bad.reason:
        names.insert(7, "upgrade.restarted")  # the failed restart is no restart
    assert names == [
        "upgrade.started",
        "upgrade.swapped",
        "upgrade.restarted",
        "upgrade.confirmed",
        "upgrade.refused",
        "upgrade.started",
        "upgrade.swapped",
        "upgrade.restarted",
        "upgrade.rolled_back",
        "upgrade.started",
        "upgrade.swapped",
        "upgrade.restarted",
        "upgrade.rolled_back",
    ]
    assert events[0]["fields"]["to_version"] == "0.2.0" and events[0]["fields"]["queued_at"]
    assert "not newer" in events[4]["fields"]["reason"]
    rollbacks = [e["fields"] for e in events if e["event"] == "upgrade.rolled_back"]
    assert [r["healthy"] for r in rollbacks] == [True, True]
    assert "within 5 s" in events[-1]["fields"]["reason"]


def held_restart(host: Host) -> tuple[str, Path]:
    """A restart command that restarts the service, then waits while a hold file exists.

    The phases between the swap and the end of the restart last milliseconds; holding the restart
    open keeps the upgrader in "restarting" until the test has killed it, however loaded the machine.
    Without the hold file (a resumed upgrade runs the recorded command again) it returns at once.
    """
    hold = host.tmp / "hold-restart"
    script = host.tmp / "held-restart"
    script.write_text(
        f'#!/bin/sh\nsv restart {host.service} || exit $?\nwhile [ -e "{hold}" ]; do sleep 0.05; done\n'
    )
    script.chmod(0o755)
    return str(script), hold


def kill_upgrader_at(
    host: Host, phases: set[str], version: str, *args: str, restart: str | None = None
) -> str:
    """Start 'midbox upgrade', SIGKILL it (and its restart command) once its state file shows the
    upgrade to ``version`` in ``phases``."""
    argv = [sys.executable, "-m", "appliance", "upgrade", "--state-dir", str(host.state_dir)]
    argv += [
        "--binary",
        str(host.binary),
        "--restart-command",
        restart or f"sv restart {host.service}",
        *args,
    ]
    proc = subprocess.Popen(
        argv,
        cwd=ROOT,
        env=child_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        end = time.monotonic() + 60
        while time.monotonic() < end:
            state = load(host.binary)
            if state is not None and state.phase in phases and state.to_version == version:
                os.killpg(proc.pid, signal.SIGKILL)
                return state.phase
            if proc.poll() is not None:
                break
            time.sleep(0.005)
        raise AssertionError(f"the upgrader never reached {phases}: {load(host.binary)}")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_an_upgrade_whose_upgrader_was_killed_is_finished_or_rolled_back_by_the_next_one(host: Host) -> None:
    good = make_bundle(host.tmp, "0.2.0", launcher("0.2.0"), host.pem)
    stuck = make_bundle(host.tmp, "0.3.1", hung("0.3.1"), host.pem)

    # Killed between the swap and the end of the restart: --resume restarts (again) and confirms.
    restart, hold = held_restart(host)
    hold.touch()
    phase = kill_upgrader_at(
        host, {"restarting"}, "0.2.0", "--bundle", str(good), "--pubkey", str(host.pub), restart=restart
    )
    hold.unlink()
    assert phase == "restarting"
    resumed = upgrade(host, "--resume")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "upgrade confirmed" in resumed.stdout
    state = load(host.binary)
    assert state is not None and state.phase == "confirmed" and state.to_version == "0.2.0"
    assert upgrade(host, "--resume").stdout.startswith("no upgrade to finish: the last one ended confirmed")

    # Killed while waiting for 0.3.1's first poll: the next 'midbox upgrade' finds the deadline (counted
    # from the recorded restart) passed, rolls back to 0.2.0, and only then looks at its own bundle.
    kill_upgrader_at(
        host, {"restarted"}, "0.3.1", "--bundle", str(stuck), "--pubkey", str(host.pub), "--deadline", "3"
    )
    assert host.binary.read_text() == hung("0.3.1")
    time.sleep(3)
    before = time.time()
    again = upgrade(host, "--bundle", str(good), "--pubkey", str(host.pub))
    assert again.returncode == 1
    assert "finishing the interrupted upgrade to 0.3.1 first" in again.stdout
    assert "rolling back to 0.2.0" in again.stdout
    assert "0.2.0 is not newer than the running 0.2.0" in again.stderr  # its own bundle: a reinstall
    assert host.binary.read_text() == launcher("0.2.0")
    polling(host.state_dir, "0.2.0", before)
    state = load(host.binary)
    assert state is not None and state.phase == "rolled_back" and state.to_version == "0.3.1"
