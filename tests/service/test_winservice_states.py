"""The Windows service state machine against an in-memory SCM (the real one is tested under Wine)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from appliance.errors import ConfigError
from appliance.stoprequest import StopRequest
from appliance.winscm import ServiceStatus, command_line, midbox_spec, quote_arg
from appliance.winservice import (
    ERROR_CALL_NOT_IMPLEMENTED,
    ERROR_SERVICE_SPECIFIC_ERROR,
    NO_ERROR,
    SERVICE_ACCEPT_STOP,
    SERVICE_CONTROL_INTERROGATE,
    SERVICE_CONTROL_PRESHUTDOWN,
    SERVICE_CONTROL_STOP,
    SERVICE_RUNNING,
    SERVICE_START_PENDING,
    SERVICE_STOP_PENDING,
    SERVICE_STOPPED,
    ControlHandler,
    WindowsService,
)
from hardening.winacl import service_sid, system_only_sddl


@dataclass
class Reported:
    state: int
    accepted: int
    win32_exit: int
    specific_exit: int
    checkpoint: int


@dataclass
class SimulatedScm:
    """Runs ServiceMain on its own thread, as the SCM does, and records every status report."""

    statuses: list[Reported] = field(default_factory=list)
    handler: ControlHandler | None = None
    registered: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start_dispatcher(self, name: str, service_main: Callable[[], None]) -> None:
        thread = threading.Thread(target=service_main, name="scm-service-main")
        thread.start()
        thread.join(timeout=30)
        assert not thread.is_alive(), "ServiceMain did not return"

    def register_handler(self, name: str, handler: ControlHandler) -> int:
        self.handler = handler
        self.registered.set()
        return 42

    def set_status(self, handle: int, status: ServiceStatus) -> None:
        assert handle == 42
        with self.lock:
            self.statuses.append(
                Reported(
                    status.dwCurrentState,
                    status.dwControlsAccepted,
                    status.dwWin32ExitCode,
                    status.dwServiceSpecificExitCode,
                    status.dwCheckPoint,
                )
            )

    def states(self) -> list[int]:
        with self.lock:
            out: list[int] = []
            for s in self.statuses:
                if not out or out[-1] != s.state:
                    out.append(s.state)
            return out

    def wait_for(self, state: int, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while state not in self.states():
            assert time.monotonic() < deadline, f"never reported {state}: {self.states()}"
            time.sleep(0.01)

    def control(self, code: int) -> int:
        assert self.registered.wait(10) and self.handler is not None
        return self.handler(code)


def dispatch_in_background(service: WindowsService) -> tuple[threading.Thread, list[int]]:
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(service.dispatch()))
    thread.start()
    return thread, result


def test_start_pending_then_running_then_a_graceful_stop_with_exit_code_zero() -> None:
    scm = SimulatedScm()
    drained = threading.Event()

    def body(ready: Callable[[], None], stop: StopRequest) -> int:
        ready()
        while not stop.requested:
            time.sleep(0.01)
        time.sleep(1.5)  # draining: the pulse must keep STOP_PENDING alive meanwhile
        drained.set()
        return 0

    thread, result = dispatch_in_background(WindowsService("midbox", body, scm))
    scm.wait_for(SERVICE_RUNNING)
    running = next(s for s in scm.statuses if s.state == SERVICE_RUNNING)
    assert running.accepted & SERVICE_ACCEPT_STOP
    assert scm.control(SERVICE_CONTROL_INTERROGATE) == NO_ERROR
    assert scm.control(0x80) == ERROR_CALL_NOT_IMPLEMENTED  # a user-defined control we do not handle
    assert scm.control(SERVICE_CONTROL_STOP) == NO_ERROR
    thread.join(timeout=10)
    assert drained.is_set() and result == [0]
    assert scm.states() == [SERVICE_START_PENDING, SERVICE_RUNNING, SERVICE_STOP_PENDING, SERVICE_STOPPED]
    pending = [s.checkpoint for s in scm.statuses if s.state == SERVICE_STOP_PENDING]
    assert len(pending) >= 2 and pending == sorted(pending) and len(set(pending)) == len(pending)
    last = scm.statuses[-1]
    assert (last.state, last.win32_exit, last.specific_exit, last.accepted) == (SERVICE_STOPPED, 0, 0, 0)


def test_a_refused_config_stops_the_service_with_a_service_specific_exit_code() -> None:
    scm = SimulatedScm()

    def body(ready: Callable[[], None], stop: StopRequest) -> int:
        raise ConfigError("config signature does not verify")

    thread, result = dispatch_in_background(WindowsService("midbox", body, scm))
    thread.join(timeout=10)
    assert result == [1]
    assert SERVICE_RUNNING not in scm.states()
    last = scm.statuses[-1]
    assert (last.state, last.win32_exit, last.specific_exit) == (
        SERVICE_STOPPED,
        ERROR_SERVICE_SPECIFIC_ERROR,
        1,
    )


def test_a_stop_during_start_wins_over_a_late_ready() -> None:
    scm = SimulatedScm()
    asked = threading.Event()

    def body(ready: Callable[[], None], stop: StopRequest) -> int:
        asked.wait(10)
        ready()  # the appliance came up after the SCM asked it to stop
        assert stop.requested
        return 0

    thread, result = dispatch_in_background(WindowsService("midbox", body, scm))
    scm.wait_for(SERVICE_START_PENDING)
    assert scm.control(SERVICE_CONTROL_PRESHUTDOWN) == NO_ERROR
    asked.set()
    thread.join(timeout=10)
    assert result == [0]
    assert scm.states() == [SERVICE_START_PENDING, SERVICE_STOP_PENDING, SERVICE_STOPPED]


def test_a_crashing_body_is_reported_as_failed_not_left_pending() -> None:
    scm = SimulatedScm()

    def body(ready: Callable[[], None], stop: StopRequest) -> int:
        ready()
        raise RuntimeError("boom")

    thread, result = dispatch_in_background(WindowsService("midbox", body, scm))
    thread.join(timeout=10)
    assert result == [1] and scm.statuses[-1].state == SERVICE_STOPPED and scm.statuses[-1].specific_exit == 1


def test_service_command_lines_are_always_quoted() -> None:
    line = command_line([r"C:\Program Files\midbox\midbox.exe", "service", "run", "--state-dir", "C:\\"])
    assert line == r'"C:\Program Files\midbox\midbox.exe" "service" "run" "--state-dir" "C:\\"'
    assert quote_arg("") == '""'
    for bad in ['a"b', "100%PATH%", "a\nb"]:
        with pytest.raises(Exception, match="cannot be part|expand"):
            quote_arg(bad)


def test_the_store_passphrase_file_reaches_the_service_as_a_quoted_path() -> None:
    plain = midbox_spec([r"C:\Program Files\midbox\midbox.exe"], "midbox", r"C:\m\c.toml", r"C:\m")
    assert "--passphrase-file" not in plain.command_line
    spec = midbox_spec(
        [r"C:\Program Files\midbox\midbox.exe"],
        "midbox",
        r"C:\m\c.toml",
        r"C:\m",
        passphrase_file=r"C:\m\store pass.txt",
    )
    assert spec.command_line.endswith(r'"--passphrase-file" "C:\m\store pass.txt"')


def test_the_virtual_account_sid_is_derived_as_windows_derives_it() -> None:
    # NT SERVICE\TrustedInstaller's SID is well known; the same derivation gives NT SERVICE\midbox's.
    assert service_sid("TrustedInstaller") == "S-1-5-80-956008885-3418522649-1831038044-1853292631-2271478464"
    assert service_sid("trustedinstaller") == service_sid("TrustedInstaller")


def test_the_state_dir_acl_is_protected_and_names_only_system_administrators_and_the_service() -> None:
    assert system_only_sddl() == "D:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)"
    sid = service_sid("midbox")
    assert system_only_sddl([sid]) == f"D:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)(A;OICI;FA;;;{sid})"
