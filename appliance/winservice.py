"""The service side of the Windows Service Control Manager protocol, through ctypes (no pywin32).

``midbox service run`` is what the SCM starts. The main thread hands the process to the SCM with
StartServiceCtrlDispatcherW, which blocks; the SCM then calls ServiceMain on a thread of its own.
ServiceMain registers the control handler, reports START_PENDING, runs the appliance, reports
RUNNING once it is up, and STOPPED with its exit code when it returns. STOP, SHUTDOWN and
PRESHUTDOWN arrive on the dispatcher (main) thread and ask the appliance to stop gracefully; while
it drains and posts its audit checkpoint, a pulse keeps STOP_PENDING alive with rising checkpoints.

The state machine (:class:`WindowsService`) talks to the SCM through the :class:`ScmApi` seam, so
it is tested on any OS with :class:`tests`' simulator and for real under Wine with :class:`Advapi32Scm`.
"""

from __future__ import annotations

import ctypes
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from appliance.errors import EXIT_CHECK_FAILED, ApplianceError, UsageError
from appliance.stoprequest import StopRequest
from appliance.winscm import ServiceStatus
from hardening.errors import HardeningError
from hardening.winacl import system_dll

log = logging.getLogger(__name__)

SERVICE_WIN32_OWN_PROCESS = 0x10

SERVICE_STOPPED = 1
SERVICE_START_PENDING = 2
SERVICE_STOP_PENDING = 3
SERVICE_RUNNING = 4

SERVICE_ACCEPT_STOP = 0x1
SERVICE_ACCEPT_SHUTDOWN = 0x4
SERVICE_ACCEPT_PRESHUTDOWN = 0x100

SERVICE_CONTROL_STOP = 0x1
SERVICE_CONTROL_INTERROGATE = 0x4
SERVICE_CONTROL_SHUTDOWN = 0x5
SERVICE_CONTROL_PRESHUTDOWN = 0xF

NO_ERROR = 0
ERROR_CALL_NOT_IMPLEMENTED = 120
ERROR_FAILED_SERVICE_CONTROLLER_CONNECT = 1063
ERROR_SERVICE_SPECIFIC_ERROR = 1066

STOP_CONTROLS = frozenset({SERVICE_CONTROL_STOP, SERVICE_CONTROL_SHUTDOWN, SERVICE_CONTROL_PRESHUTDOWN})

# Wait hints: how long the SCM should wait for the next checkpoint before it thinks we hang.
START_WAIT_HINT_MS = 30_000
STOP_WAIT_HINT_MS = 10_000
PULSE_INTERVAL_S = 1.0
SERVICE_LOG_NAME = "service.log"

ControlHandler = Callable[[int], int]
# The appliance itself: called with (ready, stop_request); returns the process exit code.
ServiceBody = Callable[[Callable[[], None], StopRequest], int]


class ServiceControlError(ApplianceError):
    """The Service Control Manager refused a call."""


class ScmApi(Protocol):
    """What the service needs of the SCM; Advapi32Scm is the real one."""

    def start_dispatcher(self, name: str, service_main: Callable[[], None]) -> None:
        """Block until the service stopped; call ``service_main`` on a thread of the SCM's."""

    def register_handler(self, name: str, handler: ControlHandler) -> int: ...

    def set_status(self, handle: int, status: ServiceStatus) -> None: ...


class _StatusReporter:
    """The one place that reports status; called from the ServiceMain, dispatcher and pulse threads."""

    def __init__(self, api: ScmApi, handle: int) -> None:
        self._api = api
        self._handle = handle
        self._lock = threading.Lock()
        self._state = 0  # nothing reported yet
        self._checkpoint = 0
        self._wait_hint_ms = 0
        self._final = False

    def report(self, state: int, *, wait_hint_ms: int = 0, exit_code: int = 0) -> None:
        with self._lock:
            if self._final:
                return  # after STOPPED the SCM may end the process at any moment: say nothing more
            if self._state == SERVICE_STOP_PENDING and state in (SERVICE_START_PENDING, SERVICE_RUNNING):
                return  # a stop asked for during start wins over a late "ready"
            self._state = state
            self._wait_hint_ms = wait_hint_ms
            pending = state in (SERVICE_START_PENDING, SERVICE_STOP_PENDING)
            self._checkpoint = self._checkpoint + 1 if pending else 0
            self._send(exit_code)
            self._final = state == SERVICE_STOPPED

    def pulse(self) -> None:
        """While pending, a rising checkpoint tells the SCM we are making progress."""
        with self._lock:
            if self._state not in (SERVICE_START_PENDING, SERVICE_STOP_PENDING):
                return
            self._checkpoint += 1
            self._send(0)

    def _send(self, exit_code: int) -> None:
        accepted = 0
        if self._state == SERVICE_RUNNING:
            accepted = SERVICE_ACCEPT_STOP | SERVICE_ACCEPT_SHUTDOWN | SERVICE_ACCEPT_PRESHUTDOWN
        status = ServiceStatus(
            SERVICE_WIN32_OWN_PROCESS,
            self._state,
            accepted,
            ERROR_SERVICE_SPECIFIC_ERROR if exit_code else NO_ERROR,
            exit_code,
            self._checkpoint,
            self._wait_hint_ms,
        )
        try:
            self._api.set_status(self._handle, status)
        except ServiceControlError as e:
            log.error("could not report service status %d: %s", self._state, e)


class WindowsService:
    """One service run: holds every ctypes callback and handle for as long as the service lives."""

    def __init__(self, name: str, body: ServiceBody, api: ScmApi) -> None:
        self._name = name
        self._body = body
        self._api = api
        self._stop = StopRequest()
        self._reporter: _StatusReporter | None = None
        self._stopping = threading.Event()
        self._exit_code: int | None = None

    def dispatch(self) -> int:
        """On the main thread: hand the process to the SCM; return the service's exit code."""
        self._api.start_dispatcher(self._name, self._service_main)
        if self._exit_code is None:
            raise ServiceControlError(f"the SCM did not start the service main of {self._name}")
        return self._exit_code

    def _service_main(self) -> None:
        """On the SCM's thread. Nothing may escape: an exception here would leave the SCM waiting."""
        exit_code = 1
        pulse: threading.Thread | None = None
        try:
            reporter = _StatusReporter(self._api, self._api.register_handler(self._name, self._on_control))
            self._reporter = reporter
            reporter.report(SERVICE_START_PENDING, wait_hint_ms=START_WAIT_HINT_MS)
            pulse = threading.Thread(target=self._pulse, name="scm-pulse", daemon=True)
            pulse.start()
            exit_code = self._run_body(reporter)
        except ServiceControlError as e:
            log.error("the SCM refused the service: %s", e)
        finally:
            self._exit_code = exit_code
            self._stopping.set()
            if pulse is not None:
                pulse.join(timeout=2 * PULSE_INTERVAL_S)
            if self._reporter is not None:
                self._reporter.report(SERVICE_STOPPED, exit_code=exit_code)

    def _run_body(self, reporter: _StatusReporter) -> int:
        def ready() -> None:
            reporter.report(SERVICE_RUNNING)
            log.info("service %s running", self._name)

        try:
            code = int(self._body(ready, self._stop))
        except ApplianceError as e:
            log.error("midbox stopped: %s", e)
            return e.exit_code
        except HardeningError as e:  # a refused signature, a broken audit chain: a check failed
            log.error("midbox stopped: %s", e)
            return EXIT_CHECK_FAILED
        except Exception as e:
            # Anything else: the exit code says "failed"; the log names it in one line, no traceback.
            log.error("midbox stopped on %s: %s", type(e).__name__, e)
            return 1
        log.info("service %s stopped with exit code %d", self._name, code)
        return code

    def _on_control(self, control: int) -> int:
        """On the dispatcher thread; must return quickly."""
        if control in STOP_CONTROLS:
            if self._reporter is not None:
                self._reporter.report(SERVICE_STOP_PENDING, wait_hint_ms=STOP_WAIT_HINT_MS)
            log.info("service control %#x: stopping gracefully", control)
            self._stop.request()
            return NO_ERROR
        if control == SERVICE_CONTROL_INTERROGATE:
            return NO_ERROR
        return ERROR_CALL_NOT_IMPLEMENTED

    def _pulse(self) -> None:
        while not self._stopping.wait(PULSE_INTERVAL_S):
            if self._reporter is not None:
                self._reporter.pulse()


class Advapi32Scm:
    """The real SCM through advapi32. Keeps the ctypes callbacks alive for the service's life:
    a collected callback that Windows still calls is a crash, not an exception."""

    def __init__(self) -> None:
        self._advapi = system_dll("advapi32")
        self._keep: list[Any] = []
        self._handler_type = _winfunctype(
            ctypes.c_uint32, ctypes.c_uint32, ctypes.c_uint32, ctypes.c_void_p, ctypes.c_void_p
        )
        self._main_type = _winfunctype(None, ctypes.c_uint32, ctypes.c_void_p)
        self._advapi.RegisterServiceCtrlHandlerExW.restype = ctypes.c_void_p
        self._advapi.RegisterServiceCtrlHandlerExW.argtypes = [
            ctypes.c_wchar_p,
            self._handler_type,
            ctypes.c_void_p,
        ]
        self._advapi.SetServiceStatus.argtypes = [ctypes.c_void_p, ctypes.POINTER(ServiceStatus)]
        self._advapi.SetServiceStatus.restype = ctypes.c_int

    def start_dispatcher(self, name: str, service_main: Callable[[], None]) -> None:
        def main(_argc: int, _argv: int) -> None:
            service_main()

        callback = self._main_type(main)
        entry_type = _TableEntry * 2
        service_name = ctypes.create_unicode_buffer(name)
        table = entry_type(
            _TableEntry(ctypes.cast(service_name, ctypes.c_wchar_p), ctypes.cast(callback, ctypes.c_void_p)),
            _TableEntry(None, None),
        )
        self._keep += [callback, service_name, table]
        if not self._advapi.StartServiceCtrlDispatcherW(table):
            code = _last_error()
            if code == ERROR_FAILED_SERVICE_CONTROLLER_CONNECT:
                raise UsageError(
                    "'midbox service run' is started by the Service Control Manager, not by hand; "
                    "to run in the foreground use 'midbox run --config CONFIG'"
                )
            raise ServiceControlError(f"StartServiceCtrlDispatcherW failed: Windows error {code}")

    def register_handler(self, name: str, handler: ControlHandler) -> int:
        def handler_ex(control: int, _event: int, _data: int | None, _context: int | None) -> int:
            try:
                return handler(control)
            except Exception:  # an exception may not cross back into the SCM
                log.exception("service control handler failed")
                return NO_ERROR

        callback = self._handler_type(handler_ex)
        self._keep.append(callback)
        handle = self._advapi.RegisterServiceCtrlHandlerExW(name, callback, None)
        if not handle:
            raise ServiceControlError(f"RegisterServiceCtrlHandlerExW failed: Windows error {_last_error()}")
        return int(handle)

    def set_status(self, handle: int, status: ServiceStatus) -> None:
        if not self._advapi.SetServiceStatus(ctypes.c_void_p(handle), ctypes.byref(status)):
            raise ServiceControlError(f"SetServiceStatus failed: Windows error {_last_error()}")


class _TableEntry(ctypes.Structure):
    """SERVICE_TABLE_ENTRYW."""

    _fields_ = [("lpServiceName", ctypes.c_wchar_p), ("lpServiceProc", ctypes.c_void_p)]


def _winfunctype(restype: Any, *argtypes: Any) -> Any:
    return ctypes.WINFUNCTYPE(restype, *argtypes)  # type: ignore[attr-defined]


def _last_error() -> int:
    return int(ctypes.get_last_error())  # type: ignore[attr-defined]


def run_service(name: str, config_path: Path, state_dir: Path, passphrase_file: Path | None) -> int:
    """``midbox service run``: the appliance as the SCM's service ``name``; returns its exit code."""
    import asyncio

    from appliance.service import ServiceOptions, serve

    options = ServiceOptions(config_path=config_path, state_dir=state_dir, passphrase_file=passphrase_file)

    def body(ready: Callable[[], None], stop: StopRequest) -> int:
        _log_to_file(state_dir)
        return asyncio.run(serve(options, ready=ready, stop_request=stop))

    return WindowsService(name, body, Advapi32Scm()).dispatch()


def _log_to_file(state_dir: Path) -> None:
    """A service has no console. Its log goes to a file in the private state dir: the same lines the
    journal gets on Linux, protected like the rest of the state, readable without an event-log
    message DLL; the SCM itself records starts, stops and crashes in the System event log."""
    from appliance.limits import SERVICE_LOG_BACKUPS, SERVICE_LOG_BYTES
    from appliance.servicelog import RotatingLogFile
    from hardening.perms import ensure_private_dir

    ensure_private_dir(state_dir)
    handler = RotatingLogFile(
        state_dir / SERVICE_LOG_NAME, max_bytes=SERVICE_LOG_BYTES, backups=SERVICE_LOG_BACKUPS
    )
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)
