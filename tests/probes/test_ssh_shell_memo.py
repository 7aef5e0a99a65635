"""One POSIX shell check per login, not per connection: the memo on its own, then against a real sshd."""

from __future__ import annotations

import asyncio
import pwd
import threading
import time
from pathlib import Path

import pytest

from appliance.errors import ProbeError
from appliance.probes._sshcommand import SHELL_CHECK
from appliance.probes._sshshells import PosixShells
from appliance.probes.ssh import SshProbe
from hardening.policy import Policy
from tests.daemons import SshServer, run_sshd_new_host_key
from tests.probes.conftest import loopback_rule, make_ctx
from tests.support.ssh import creds, job, pinned_state, run

LOGIN = ("192.0.2.1", 22, "discovery")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_pass_is_remembered_until_it_expires() -> None:
    clock = Clock()
    shells = PosixShells(600, 16, clock)
    assert shells.ask(LOGIN, 1) is False  # unknown: the caller checks
    shells.settle(LOGIN, True)
    assert shells.ask(LOGIN, 1) is True
    assert shells.ask(("192.0.2.1", 22, "other-user"), 0) is False  # per user
    clock.now += 599
    assert shells.ask(LOGIN, 1) is True
    clock.now += 2
    assert shells.ask(LOGIN, 1) is False


def test_a_failed_check_is_never_remembered() -> None:
    shells = PosixShells(600, 16, Clock())
    assert shells.ask(LOGIN, 1) is False
    shells.settle(LOGIN, False)
    assert shells.ask(LOGIN, 1) is False


def test_ttl_zero_always_checks() -> None:
    shells = PosixShells(0, 16, Clock())
    for _ in range(3):
        assert shells.ask(LOGIN, 1) is False
        shells.settle(LOGIN, True)


def test_when_full_the_oldest_pass_goes_first() -> None:
    clock = Clock()
    shells = PosixShells(600, 2, clock)
    logins = [("192.0.2.1", 22, f"u{i}") for i in range(3)]
    for login in logins:
        clock.now += 1
        assert shells.ask(login, 0) is False
        shells.settle(login, True)
    assert [shells.ask(login, 0) for login in logins[1:]] == [True, True]
    assert shells.ask(logins[0], 0) is False  # evicted


def waiter(shells: PosixShells, out: list[bool], wait_s: float) -> threading.Thread:
    t = threading.Thread(target=lambda: out.append(shells.ask(LOGIN, wait_s)))
    t.start()
    return t


@pytest.mark.parametrize(("verdict", "waiter_checks"), [(True, False), (False, True)])
def test_a_second_session_waits_for_the_check_under_way(verdict: bool, waiter_checks: bool) -> None:
    shells = PosixShells(600, 16, time.monotonic)
    assert shells.ask(LOGIN, 5) is False  # this "session" checks
    out: list[bool] = []
    t = waiter(shells, out, 5)
    t.join(0.2)
    assert t.is_alive() and out == []  # it waits rather than running a second check
    shells.settle(LOGIN, verdict)
    t.join(5)
    assert out == [not waiter_checks]


def test_a_waiter_checks_itself_when_the_other_check_outlasts_its_timeout() -> None:
    shells = PosixShells(600, 16, time.monotonic)
    assert shells.ask(LOGIN, 5) is False  # never settled (a hung check)
    out: list[bool] = []
    waiter(shells, out, 0.1).join(5)
    assert out == [False]


def test_a_burst_of_jobs_to_one_login_runs_the_shell_check_once(sshd: SshServer, tmp_path: Path) -> None:
    home = Path(pwd.getpwnam(sshd.user).pw_dir)
    # sshd runs every exec request through this, so the log holds what the probe asked the server to run.
    counting = (
        'ForceCommand echo "$SSH_ORIGINAL_COMMAND" >> "$HOME/.midbox-execs-$PPID"; eval "$SSH_ORIGINAL_COMMAND"',
    )
    with run_sshd_new_host_key(sshd, tmp_path / "counting", counting) as srv:
        ctx = make_ctx(
            Policy([loopback_rule(("ssh",), ((srv.port, srv.port),), ("key",))]),
            creds(srv),
            pinned_state(tmp_path, srv),
        )

        async def burst(probe: SshProbe, n: int) -> list[str]:
            try:
                results = await asyncio.gather(
                    *(probe.run(job(srv, f"echo job{i}", "key"), ctx) for i in range(n))
                )
            finally:
                await probe.aclose()
            return [r.findtext("stdout") or "" for r in results]

        before = set(home.glob(".midbox-execs-*"))
        assert asyncio.run(burst(SshProbe(max_connections=8, per_target=8), 8)) == [
            f"job{i}\n" for i in range(8)
        ]
        assert asyncio.run(burst(SshProbe(shell_memo_s=0), 3)) == [f"job{i}\n" for i in range(3)]
        logs = set(home.glob(".midbox-execs-*")) - before
        lines = [line for log in logs for line in log.read_text().splitlines()]
        for log in logs:
            log.unlink()
    assert sum(SHELL_CHECK in line for line in lines) == 1 + 3  # once for the burst; each time when off
    assert sum("echo job" in line for line in lines) == 11


def test_a_device_that_fails_the_check_fails_every_job(sshd: SshServer, tmp_path: Path) -> None:
    router = ('ForceCommand printf "%% Invalid input detected at marker.\\n"',)
    with run_sshd_new_host_key(sshd, tmp_path / "router", router) as dev:
        ctx = make_ctx(
            Policy([loopback_rule(("ssh",), ((dev.port, dev.port),), ("key",))]),
            creds(dev),
            pinned_state(tmp_path, dev),
        )
        probe = SshProbe()

        async def twice() -> list[BaseException | object]:
            try:
                return await asyncio.gather(
                    *(probe.run(job(dev, "show version", "key"), ctx) for _ in range(2)),
                    return_exceptions=True,
                )
            finally:
                await probe.aclose()

        outcomes = asyncio.run(twice())
        assert all(isinstance(o, ProbeError) and "POSIX shell" in str(o) for o in outcomes), outcomes
        with pytest.raises(ProbeError, match="POSIX shell"):
            run(probe, job(dev, "show version", "key"), ctx)
