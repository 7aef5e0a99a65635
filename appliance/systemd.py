"""Install, remove and query the midbox systemd unit.

systemctl runs only when systemd manages this host (``/run/systemd/system`` exists) and the unit
goes to the directory systemd loads; otherwise the commands are handed back for the operator to
run, so a test (or a chroot, or an image build) never changes the host it runs on.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from appliance.errors import ApplianceError, UsageError
from appliance.hostservice import InstallRequest, Report
from appliance.limits import MAX_UNIT_BYTES, SYSTEMCTL_TIMEOUT_S
from hardening.atomic import atomic_write

SYSTEM_UNIT_DIR = Path("/etc/systemd/system")
SYSTEMD_RUNTIME_DIR = Path("/run/systemd/system")
SYSTEMCTL_CANDIDATES = (Path("/usr/bin/systemctl"), Path("/bin/systemctl"))
UNIT_MARKER = "# midbox unit for "

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


class HostServiceError(ApplianceError):
    """The host's service manager refused, or a unit file is not what midbox expects."""


def check_service_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise UsageError(f"{name!r} is not a usable service name: letters, digits, '_', '.', '-', at most 64")
    return name


@dataclass(frozen=True)
class Systemd:
    """Where units live and whether systemctl may be run; decided once by the command handler."""

    unit_dir: Path = SYSTEM_UNIT_DIR
    running: bool = False
    systemctl: Path | None = None

    @classmethod
    def detect(cls, unit_dir: Path | None) -> Systemd:
        directory = unit_dir or SYSTEM_UNIT_DIR
        systemctl = next((p for p in SYSTEMCTL_CANDIDATES if p.is_file()), None)
        # Only the directory systemd reads: a unit written elsewhere is not systemd's business.
        systemds_dir = directory.resolve() == SYSTEM_UNIT_DIR
        live = systemctl is not None and systemds_dir and SYSTEMD_RUNTIME_DIR.is_dir()
        return cls(unit_dir=directory, running=live, systemctl=systemctl)

    def unit_path(self, name: str) -> Path:
        return self.unit_dir / f"{check_service_name(name)}.service"

    def command(self, *args: str) -> list[str]:
        return [str(self.systemctl or "systemctl"), *args]


@dataclass(frozen=True)
class Outcome:
    """What was done, and the commands the operator still has to run (systemd not running here)."""

    done: list[str] = field(default_factory=list)
    todo: list[list[str]] = field(default_factory=list)


def install_unit(systemd: Systemd, name: str, text: str, *, force: bool, start: bool = True) -> Outcome:
    path = systemd.unit_path(name)
    done: list[str] = []
    current = _read_unit(path)
    if current == text:
        done.append(f"{path} is already this unit")
    else:
        if current is not None and not force:
            raise HostServiceError(
                f"{path} exists and differs from the unit for this config; compare it with "
                f"'midbox service render-unit', then pass --force to replace it"
            )
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, text.encode("utf-8"), mode=0o644)  # systemd reads units as any user
        except OSError as e:
            raise HostServiceError(f"cannot write {path}: {e.strerror} (install needs root)") from e
        done.append(f"wrote {path}")
    enable = systemd.command("enable", "--now", path.name) if start else systemd.command("enable", path.name)
    commands = [systemd.command("daemon-reload"), enable]
    return _apply(systemd, done, commands)


def uninstall_unit(systemd: Systemd, name: str, *, force: bool) -> Outcome:
    path = systemd.unit_path(name)
    current = _read_unit(path)
    if current is None:
        raise HostServiceError(f"no unit at {path}; nothing to uninstall")
    if not current.startswith(UNIT_MARKER) and not force:
        raise HostServiceError(f"{path} was not written by midbox; pass --force to remove it anyway")
    done: list[str] = []
    if systemd.running:
        _systemctl(systemd.command("disable", "--now", path.name))
        done.append(f"stopped and disabled {path.name}")
    else:
        # What 'systemctl enable' made: the WantedBy link. Removed only if it points at our unit.
        link = systemd.unit_dir / "multi-user.target.wants" / path.name
        if link.is_symlink() and Path(os.readlink(link)) in (path, Path(path.name)):
            _remove(link)
            done.append(f"removed {link}")
    _remove(path)
    done.append(f"removed {path}")
    return _apply(systemd, done, [systemd.command("daemon-reload")])


def unit_status(systemd: Systemd, name: str) -> dict[str, object]:
    path = systemd.unit_path(name)
    status: dict[str, object] = {"name": name, "unit": str(path), "installed": path.is_file()}
    if not systemd.running:
        status.update(state="unknown (systemd is not running here)", pid=None, running=None)
        return status
    out = _systemctl(
        systemd.command("show", path.name, "--property=LoadState,ActiveState,SubState,MainPID,ExecMainStatus")
    )
    props = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    status["installed"] = props.get("LoadState") == "loaded"
    status["state"] = f"{props.get('ActiveState', '?')} ({props.get('SubState', '?')})"
    pid = int(props.get("MainPID", "0") or 0)
    status["pid"] = pid or None
    status["running"] = props.get("ActiveState") == "active"
    return status


def _apply(systemd: Systemd, done: list[str], commands: list[list[str]]) -> Outcome:
    if not systemd.running:
        return Outcome(done=done, todo=commands)
    for argv in commands:
        _systemctl(argv)
        done.append("ran " + " ".join(argv))
    return Outcome(done=done)


def _systemctl(argv: list[str]) -> str:
    try:
        done = subprocess.run(  # noqa: S603 - absolute systemctl, fixed arguments, no shell
            argv, capture_output=True, text=True, timeout=SYSTEMCTL_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise HostServiceError(f"{' '.join(argv)} failed: {e}") from e
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise HostServiceError(f"{' '.join(argv)} exited {done.returncode}: {reason}")
    return done.stdout


def _read_unit(path: Path) -> str | None:
    try:
        if path.stat().st_size > MAX_UNIT_BYTES:
            raise HostServiceError(f"{path} is larger than any unit midbox writes; it is not ours")
        return path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return None
    except OSError as e:
        raise HostServiceError(f"cannot read {path}: {e.strerror}") from e


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except OSError as e:
        raise HostServiceError(f"cannot remove {path}: {e.strerror} (uninstall needs root)") from e


class SystemdManager:
    """``midbox service`` on Linux, behind ``hostservice.ServiceManager``."""

    def __init__(self, unit_dir: Path | None) -> None:
        self._unit_dir = unit_dir

    def install(
        self, request: InstallRequest, verify: Callable[[], object], unit_text: Callable[[], str]
    ) -> Report:
        if request.virtual_account or request.unsafe_binary_location or request.passphrase_file:
            raise UsageError(
                "--virtual-account, --unsafe-binary-location and --passphrase-file are Windows options"
            )
        del verify  # rendering the unit verifies the config
        outcome = install_unit(
            Systemd.detect(self._unit_dir),
            request.name,
            unit_text(),
            force=request.force,
            start=request.start,
        )
        return Report(done=outcome.done, todo=outcome.todo)

    def uninstall(self, name: str, *, force: bool) -> Report:
        outcome = uninstall_unit(Systemd.detect(self._unit_dir), name, force=force)
        return Report(done=outcome.done, todo=outcome.todo)

    def status(self, name: str) -> dict[str, object]:
        return unit_status(Systemd.detect(self._unit_dir), name)

    def run(self, name: str, config_path: Path, state_dir: Path, passphrase_file: Path | None) -> int:
        raise UsageError("'service run' is the Windows service entry; systemd runs 'midbox run --config ...'")
