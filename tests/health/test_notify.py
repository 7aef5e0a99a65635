"""systemd's notify protocol from a real 'midbox run': READY=1 only after the first successful poll,
WATCHDOG=1 at half WatchdogSec, RELOADING=1/READY=1 around a reload, STOPPING=1, STATUS= lines."""

from __future__ import annotations

import itertools
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from appliance.sdnotify import Notifier, NotifySettings
from appliance.status_file import read_status
from appliance.unit import WATCHDOG_SEC, render
from devinstance.server import Fault
from tests.helpers import Pki, dev_instance
from tests.signing.helpers import install_trust
from tests.support.cli import child_env
from tests.support.running import ROOT, config_bytes, signed_config
from tests.support.unit import FAKE_DNS, config


def receiver(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(0.2)
    return sock


def drain(sock: socket.socket, into: list[tuple[float, str]], until: float) -> None:
    while time.monotonic() < until:
        try:
            into.append((time.monotonic(), sock.recv(4096).decode()))
        except TimeoutError:
            continue


def wait_for(sock: socket.socket, got: list[tuple[float, str]], needle: str, timeout: float = 20) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for when, message in got:
            if needle in message.splitlines():
                return when
        drain(sock, got, time.monotonic() + 0.2)
    raise AssertionError(f"{needle} not sent within {timeout} s: {[m for _, m in got]}")


def test_ready_waits_for_a_poll_then_watchdog_reload_and_stop(
    dev_pki: Pki, tmp_path: Path, state_dir: Path
) -> None:
    admin = Ed25519PrivateKey.generate()
    install_trust(state_dir, [admin])
    sock_path = tmp_path / "notify.sock"
    sock = receiver(sock_path)
    got: list[tuple[float, str]] = []
    with dev_instance(dev_pki, tmp_path / "db.sqlite") as instance:
        # The instance refuses polls for a while: no READY=1 before one succeeds.
        instance.state.faults.append(Fault(status=503, count=6, retry_after="1"))
        cfg = signed_config(tmp_path / "admin", [admin], config_bytes(instance.url, dev_pki, 1, "80"))
        env = {**child_env(), "NOTIFY_SOCKET": str(sock_path), "WATCHDOG_USEC": "1000000"}
        argv = [sys.executable, "-m", "appliance", "run", "--config", str(cfg), "--state-dir", str(state_dir)]
        with (tmp_path / "run.log").open("wb") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
        try:
            ready_at = wait_for(sock, got, "READY=1")
            status = read_status(state_dir)
            assert status is not None and status["last_poll_ok"] and status["polls"]["failed"] >= 1  # type: ignore[index]
            [ready] = [m for when, m in got if when == ready_at]
            assert "STATUS=running, config version 1" in ready
            # Pings every 0.5 s (half of WATCHDOG_USEC), from before READY on.
            drain(sock, got, time.monotonic() + 2)
            pings = [when for when, m in got if m == "WATCHDOG=1"]
            assert len(pings) >= 4 and max(b - a for a, b in itertools.pairwise(pings)) < 0.9
            # A new signed config: RELOADING=1, then READY=1 once the new runner polled.
            signed_config(
                tmp_path / "admin", [admin], config_bytes(instance.url, dev_pki, 2, "80"), version=2
            )
            got.clear()
            proc.send_signal(signal.SIGHUP)
            reloading = wait_for(sock, got, "RELOADING=1")
            ready_again = wait_for(sock, got, "READY=1")
            assert reloading < ready_again
            assert any("MONOTONIC_USEC=" in m for _, m in got)
            assert any("config version 2" in m for _, m in got)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0
            wait_for(sock, got, "STOPPING=1")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            sock.close()


def test_no_socket_means_log_lines_and_a_dead_socket_is_one_warning(tmp_path: Path, caplog) -> None:  # type: ignore[no-untyped-def]
    quiet = Notifier(NotifySettings())
    assert quiet.watchdog_interval_s is None
    with caplog.at_level("INFO"):
        quiet.ready("running, config version 3")
        quiet.reloading()
    assert "service ready: running, config version 3" in caplog.text
    broken = Notifier(NotifySettings(str(tmp_path / "absent.sock"), 10_000_000))
    assert broken.watchdog_interval_s == 5.0
    caplog.clear()
    for _ in range(3):
        broken.watchdog()
    assert caplog.text.count("could not notify systemd") == 1


def test_watchdog_belongs_to_its_pid_and_the_abstract_namespace_works(tmp_path: Path) -> None:
    assert NotifySettings.from_environ({"WATCHDOG_USEC": "5", "WATCHDOG_PID": "1"}, 2).watchdog_usec is None
    assert NotifySettings.from_environ({"WATCHDOG_USEC": "5", "WATCHDOG_PID": "2"}, 2).watchdog_usec == 5
    name = f"midbox-test-{time.monotonic_ns()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(b"\0" + name.encode())
    sock.settimeout(2)
    Notifier(NotifySettings("@" + name)).ready("x")
    assert sock.recv(100) == b"READY=1\nSTATUS=x"
    sock.close()


def test_the_rendered_unit_is_type_notify_with_a_watchdog() -> None:
    text = render(
        config(),
        binary=Path("/usr/local/bin/midbox"),
        config_path=Path("/etc/midbox/midbox.toml"),
        state_dir=Path("/var/lib/midbox"),
        resolver=lambda h: FAKE_DNS[h],
        dns=[],
    )
    lines = text.splitlines()
    assert "Type=notify" in lines and "NotifyAccess=main" in lines
    assert f"WatchdogSec={WATCHDOG_SEC}s" in lines
