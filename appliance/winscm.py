"""Install, remove and query the midbox Windows service through the Service Control Manager (ctypes).

The service is own-process, auto-start (delayed where the SCM supports it), restarted by the SCM
after a failure (including a clean exit with a nonzero code), and gets a preshutdown window long
enough for the runner to drain and post its audit checkpoint.
"""

from __future__ import annotations

import ctypes
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import NoReturn

from appliance.errors import ApplianceError, UsageError
from hardening.winacl import system_dll

SC_MANAGER_CONNECT = 0x1
SC_MANAGER_CREATE_SERVICE = 0x2
SERVICE_CHANGE_CONFIG = 0x2
SERVICE_QUERY_STATUS = 0x4
SERVICE_START = 0x10
SERVICE_STOP = 0x20
DELETE = 0x10000

SERVICE_WIN32_OWN_PROCESS = 0x10
SERVICE_AUTO_START = 2
SERVICE_ERROR_NORMAL = 1
SERVICE_CONTROL_STOP = 1
SC_STATUS_PROCESS_INFO = 0
SC_ACTION_RESTART = 1

SERVICE_CONFIG_DESCRIPTION = 1
SERVICE_CONFIG_FAILURE_ACTIONS = 2
SERVICE_CONFIG_DELAYED_AUTO_START_INFO = 3
SERVICE_CONFIG_FAILURE_ACTIONS_FLAG = 4
SERVICE_CONFIG_PRESHUTDOWN_INFO = 7

ERROR_ACCESS_DENIED = 5
ERROR_INVALID_LEVEL = 124
ERROR_SERVICE_ALREADY_RUNNING = 1056
ERROR_SERVICE_DOES_NOT_EXIST = 1060
ERROR_SERVICE_CANNOT_ACCEPT_CTRL = 1061
ERROR_SERVICE_NOT_ACTIVE = 1062
ERROR_SERVICE_MARKED_FOR_DELETE = 1072
ERROR_SERVICE_EXISTS = 1073

STATE_NAMES = {
    1: "stopped",
    2: "start-pending",
    3: "stop-pending",
    4: "running",
    5: "continue-pending",
    6: "pause-pending",
    7: "paused",
}


class ScmError(ApplianceError):
    """The Service Control Manager refused; the message says what to do."""


class NotInstalledError(ScmError):
    """No service of that name."""


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    display_name: str
    description: str
    command_line: str
    account: str | None = None  # None is LocalSystem; "NT SERVICE\\<name>" is the virtual account
    delayed_start: bool = True
    restart_delays_ms: tuple[int, ...] = (5_000, 30_000, 60_000)
    failure_reset_s: int = 86_400  # a day without failures and the next one counts as the first
    preshutdown_timeout_ms: int = 35_000  # runner drain (20 s) + checkpoint post (10 s) + margin


@dataclass(frozen=True)
class ServiceState:
    name: str
    state: str
    pid: int
    win32_exit_code: int
    service_exit_code: int

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "state": self.state,
            "pid": self.pid or None,
            "win32_exit_code": self.win32_exit_code,
            "service_exit_code": self.service_exit_code,
        }


def quote_arg(arg: str) -> str:
    """One argument as CommandLineToArgvW and the C runtime split it back: always quoted, so a
    path with spaces can never be read as a shorter, attacker-placed program ("unquoted path")."""
    if '"' in arg or "\0" in arg or "\n" in arg or "\r" in arg:
        raise UsageError(f"{arg!r} cannot be part of a service command line (quote or line break)")
    if "%" in arg:
        raise UsageError(f"{arg!r} contains '%', which the SCM would expand as an environment variable")
    trailing = len(arg) - len(arg.rstrip("\\"))
    return '"' + arg + "\\" * trailing + '"'  # backslashes before the closing quote are doubled


def command_line(argv: Sequence[str]) -> str:
    if not argv:
        raise UsageError("a service needs a program to run")
    if argv[0].endswith("\\"):
        raise UsageError(f"{argv[0]!r} is not a program path")
    return " ".join(quote_arg(a) for a in argv)


class ServiceStatus(ctypes.Structure):
    """SERVICE_STATUS, seven DWORDs."""

    _fields_ = [
        ("dwServiceType", ctypes.c_uint32),
        ("dwCurrentState", ctypes.c_uint32),
        ("dwControlsAccepted", ctypes.c_uint32),
        ("dwWin32ExitCode", ctypes.c_uint32),
        ("dwServiceSpecificExitCode", ctypes.c_uint32),
        ("dwCheckPoint", ctypes.c_uint32),
        ("dwWaitHint", ctypes.c_uint32),
    ]


class _DescriptionW(ctypes.Structure):
    _fields_ = [("lpDescription", ctypes.c_wchar_p)]


class _ScAction(ctypes.Structure):
    _fields_ = [("Type", ctypes.c_int), ("Delay", ctypes.c_uint32)]


class _FailureActionsW(ctypes.Structure):
    _fields_ = [
        ("dwResetPeriod", ctypes.c_uint32),
        ("lpRebootMsg", ctypes.c_wchar_p),
        ("lpCommand", ctypes.c_wchar_p),
        ("cActions", ctypes.c_uint32),
        ("lpsaActions", ctypes.POINTER(_ScAction)),
    ]


class _Flag(ctypes.Structure):
    """SERVICE_DELAYED_AUTO_START_INFO and SERVICE_FAILURE_ACTIONS_FLAG: one BOOL each."""

    _fields_ = [("value", ctypes.c_int)]


class _PreshutdownInfo(ctypes.Structure):
    _fields_ = [("dwPreshutdownTimeout", ctypes.c_uint32)]


class _StatusProcess(ctypes.Structure):
    """SERVICE_STATUS_PROCESS: SERVICE_STATUS, then the pid and flags."""

    _fields_ = [
        *ServiceStatus._fields_,
        ("dwProcessId", ctypes.c_uint32),
        ("dwServiceFlags", ctypes.c_uint32),
    ]


class Scm:
    """One connection to the local SCM. Windows only."""

    def __init__(self) -> None:
        self._api = system_dll("advapi32")
        for fn in ("OpenSCManagerW", "OpenServiceW", "CreateServiceW"):
            getattr(self._api, fn).restype = ctypes.c_void_p
        self._api.OpenSCManagerW.argtypes = [ctypes.c_wchar_p, ctypes.c_wchar_p, ctypes.c_uint32]
        self._api.OpenServiceW.argtypes = [ctypes.c_void_p, ctypes.c_wchar_p, ctypes.c_uint32]
        self._api.CreateServiceW.argtypes = [
            ctypes.c_void_p,
            *[ctypes.c_wchar_p] * 2,
            *[ctypes.c_uint32] * 4,
            *[ctypes.c_wchar_p] * 2,
            ctypes.c_void_p,
            *[ctypes.c_wchar_p] * 3,
        ]
        self._api.CloseServiceHandle.argtypes = [ctypes.c_void_p]
        self._api.ChangeServiceConfig2W.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_void_p]
        self._api.StartServiceW.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_void_p]
        self._api.ControlService.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.POINTER(ServiceStatus)]
        self._api.DeleteService.argtypes = [ctypes.c_void_p]
        self._api.QueryServiceStatusEx.argtypes = [
            ctypes.c_void_p,
            ctypes.c_int,
            ctypes.c_void_p,
            ctypes.c_uint32,
            ctypes.POINTER(ctypes.c_uint32),
        ]

    def install(self, spec: ServiceSpec) -> list[str]:
        """Create and configure the service; returns notes on optional settings the SCM refused."""
        with self._manager(SC_MANAGER_CONNECT | SC_MANAGER_CREATE_SERVICE) as scm:
            handle = self._api.CreateServiceW(
                scm,
                spec.name,
                spec.display_name,
                SERVICE_CHANGE_CONFIG | SERVICE_QUERY_STATUS | SERVICE_START | DELETE,
                SERVICE_WIN32_OWN_PROCESS,
                SERVICE_AUTO_START,
                SERVICE_ERROR_NORMAL,
                spec.command_line,
                None,
                None,
                None,
                spec.account,
                None,  # LocalSystem and virtual accounts have no password
            )
            if not handle:
                self._fail("create", spec.name)
            try:
                return self._configure(handle, spec)
            except ScmError:
                self._api.DeleteService(handle)  # no half-configured service left behind
                raise
            finally:
                self._api.CloseServiceHandle(handle)

    def start(self, name: str) -> None:
        with self._service(name, SERVICE_START) as h:
            if not self._api.StartServiceW(h, 0, None) and _last_error() != ERROR_SERVICE_ALREADY_RUNNING:
                self._fail("start", name)

    def query(self, name: str) -> ServiceState:
        with self._service(name, SERVICE_QUERY_STATUS) as h:
            return self._query(h, name)

    def stop(self, name: str, timeout_s: float) -> ServiceState:
        """Ask the service to stop and wait (bounded) until it has; returns its final state."""
        with self._service(name, SERVICE_STOP | SERVICE_QUERY_STATUS) as h:
            return self._stop_and_wait(h, name, timeout_s)

    def uninstall(self, name: str, timeout_s: float) -> ServiceState:
        """Stop (bounded wait) and delete; returns the state it was in before."""
        with self._service(name, SERVICE_STOP | SERVICE_QUERY_STATUS | DELETE) as h:
            before = self._query(h, name)
            self._stop_and_wait(h, name, timeout_s)
            if not self._api.DeleteService(h):
                self._fail("delete", name)
            return before

    def _stop_and_wait(self, h: int, name: str, timeout_s: float) -> ServiceState:
        deadline = time.monotonic() + timeout_s
        state = self._query(h, name)
        while state.state != "stopped":
            if state.state != "stop-pending":
                status = ServiceStatus()
                if not self._api.ControlService(h, SERVICE_CONTROL_STOP, ctypes.byref(status)):
                    code = _last_error()
                    if code not in (ERROR_SERVICE_NOT_ACTIVE, ERROR_SERVICE_CANNOT_ACCEPT_CTRL):
                        self._fail("stop", name, code)
            if time.monotonic() > deadline:
                raise ScmError(
                    f"service {name} did not stop within {timeout_s:.0f} s (it is {state.state}); "
                    f"stop it with 'sc stop {name}' and try again"
                )
            time.sleep(0.25)
            state = self._query(h, name)
        return state

    def _configure(self, handle: int, spec: ServiceSpec) -> list[str]:
        description = _DescriptionW(spec.description)
        self._change(handle, SERVICE_CONFIG_DESCRIPTION, description, spec.name)
        actions = (_ScAction * len(spec.restart_delays_ms))(
            *[_ScAction(SC_ACTION_RESTART, delay) for delay in spec.restart_delays_ms]
        )
        failure = _FailureActionsW(spec.failure_reset_s, None, None, len(spec.restart_delays_ms), actions)
        self._change(handle, SERVICE_CONFIG_FAILURE_ACTIONS, failure, spec.name)
        preshutdown = _PreshutdownInfo(spec.preshutdown_timeout_ms)
        self._change(handle, SERVICE_CONFIG_PRESHUTDOWN_INFO, preshutdown, spec.name)
        notes: list[str] = []
        # A nonzero exit code (a refused config, a failed audit log) counts as a failure too.
        if not self._optional(handle, SERVICE_CONFIG_FAILURE_ACTIONS_FLAG, _Flag(1), spec.name):
            notes.append("this SCM restarts the service only after a crash, not after a nonzero exit code")
        if spec.delayed_start and not self._optional(
            handle, SERVICE_CONFIG_DELAYED_AUTO_START_INFO, _Flag(1), spec.name
        ):
            notes.append("delayed auto-start is not available here; the service starts with the others")
        return notes

    def _optional(self, handle: int, level: int, info: ctypes.Structure, name: str) -> bool:
        """A setting older or emulated SCMs lack (ERROR_INVALID_LEVEL): False; any other refusal fails."""
        if self._api.ChangeServiceConfig2W(handle, level, ctypes.byref(info)):
            return True
        code = _last_error()
        if code != ERROR_INVALID_LEVEL:
            self._fail(f"configure (level {level})", name, code)
        return False

    def _change(self, handle: int, level: int, info: ctypes.Structure, name: str) -> None:
        if not self._api.ChangeServiceConfig2W(handle, level, ctypes.byref(info)):
            self._fail(f"configure (level {level})", name)

    def _query(self, handle: int, name: str) -> ServiceState:
        info = _StatusProcess()
        needed = ctypes.c_uint32(0)
        if not self._api.QueryServiceStatusEx(
            handle, SC_STATUS_PROCESS_INFO, ctypes.byref(info), ctypes.sizeof(info), ctypes.byref(needed)
        ):
            self._fail("query", name)
        return ServiceState(
            name=name,
            state=STATE_NAMES.get(info.dwCurrentState, f"state-{info.dwCurrentState}"),
            pid=info.dwProcessId,
            win32_exit_code=info.dwWin32ExitCode,
            service_exit_code=info.dwServiceSpecificExitCode,
        )

    @contextmanager
    def _manager(self, access: int) -> Iterator[int]:
        scm = self._api.OpenSCManagerW(None, None, access)
        if not scm:
            self._fail("open the Service Control Manager for", "this host")
        try:
            yield scm
        finally:
            self._api.CloseServiceHandle(scm)

    @contextmanager
    def _service(self, name: str, access: int) -> Iterator[int]:
        with self._manager(SC_MANAGER_CONNECT) as scm:
            handle = self._api.OpenServiceW(scm, name, access)
            if not handle:
                self._fail("open", name)
            try:
                yield handle
            finally:
                self._api.CloseServiceHandle(handle)

    def _fail(self, what: str, name: str, code: int | None = None) -> NoReturn:
        code = _last_error() if code is None else code
        if code == ERROR_SERVICE_DOES_NOT_EXIST:
            raise NotInstalledError(
                f"no service named {name} is installed; install it with 'midbox service install'"
            )
        if code == ERROR_ACCESS_DENIED:
            raise ScmError(
                f"cannot {what} service {name}: access denied; run from an elevated (Administrator) prompt"
            )
        if code == ERROR_SERVICE_EXISTS:
            raise ScmError(
                f"service {name} is already installed; run 'midbox service uninstall --name {name}' first"
            )
        if code == ERROR_SERVICE_MARKED_FOR_DELETE:
            raise ScmError(
                f"service {name} is marked for deletion; close the Services console (or reboot) and try again"
            )
        raise ScmError(f"cannot {what} service {name}: Windows error {code}")


def _last_error() -> int:
    return int(ctypes.get_last_error())  # type: ignore[attr-defined]


def midbox_spec(
    launcher: Sequence[str],
    name: str,
    config_path: str,
    state_dir: str,
    *,
    virtual_account: bool = False,
    passphrase_file: str | None = None,
) -> ServiceSpec:
    """The midbox service: ``<launcher> service run --name N --config C --state-dir D``, paths absolute
    (and ``--passphrase-file F`` when the credential store has an operator passphrase)."""
    argv = [*launcher, "service", "run", "--name", name, "--config", config_path, "--state-dir", state_dir]
    if passphrase_file is not None:
        argv += ["--passphrase-file", passphrase_file]
    return ServiceSpec(
        name=name,
        display_name=f"midbox ServiceNow MID Server ({name})",
        description="midbox: a hardened ServiceNow MID Server appliance (outbound mutual TLS only).",
        command_line=command_line(argv),
        account=f"NT SERVICE\\{name}" if virtual_account else None,
    )
