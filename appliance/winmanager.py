"""``midbox service`` on Windows: the Service Control Manager behind ``hostservice.ServiceManager``."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path, PureWindowsPath

from appliance.errors import ApplianceError, UsageError
from appliance.hostservice import InstallRequest, Report


class ScmManager:
    def install(
        self, request: InstallRequest, verify: Callable[[], object], unit_text: Callable[[], str]
    ) -> Report:
        from appliance.winscm import Scm, midbox_spec
        from hardening.perms import ensure_private_dir
        from hardening.winacl import restrict_dir, service_sid

        del unit_text  # systemd's; the SCM takes a command line
        notes: list[str] = []
        state_dir = request.state_dir.resolve()
        _check_state_dir(state_dir, request.environ)
        if request.binary is not None:
            launcher = [str(request.binary.resolve())]
        elif getattr(sys, "frozen", False):
            launcher = [sys.executable]
        else:  # a source install: the interpreter runs the package
            launcher = [sys.executable, "-m", "appliance"]
        notes += _check_binary_location(
            Path(launcher[0]), request.environ, unsafe=request.unsafe_binary_location
        )
        verify()
        ensure_private_dir(state_dir)
        # SYSTEM and Administrators only (and the service's own SID when it runs as NT SERVICE\NAME).
        try:
            restrict_dir(state_dir, [service_sid(request.name)] if request.virtual_account else [])
        except OSError as e:
            raise ApplianceError(
                f"cannot restrict {state_dir} to SYSTEM and Administrators ({e}); run from an elevated prompt"
            ) from e
        spec = midbox_spec(
            launcher,
            request.name,
            str(request.config_path),
            str(state_dir),
            virtual_account=request.virtual_account,
            passphrase_file=str(request.passphrase_file.resolve()) if request.passphrase_file else None,
        )
        scm = Scm()
        notes += [f"note: {note}" for note in scm.install(spec)]
        done = [f"installed service {request.name}: {spec.command_line}"]
        if request.start:
            scm.start(request.name)
            done.append(f"started service {request.name} ({scm.query(request.name).state})")
        return Report(done=done, notes=notes)

    def uninstall(self, name: str, *, force: bool) -> Report:
        from appliance.limits import SERVICE_STOP_TIMEOUT_S
        from appliance.winscm import Scm

        del force  # the SCM knows which service it is
        before = Scm().uninstall(name, SERVICE_STOP_TIMEOUT_S)
        was = "" if before.state == "stopped" else f" (stopped it; it was {before.state})"
        return Report(done=[f"removed service {name}{was}"])

    def status(self, name: str) -> dict[str, object]:
        from appliance.winscm import Scm

        state = Scm().query(name)  # NotInstalledError: exit 1
        return state.as_dict() | {"installed": True, "running": state.state == "running"}

    def run(self, name: str, config_path: Path, state_dir: Path, passphrase_file: Path | None) -> int:
        from appliance.winservice import run_service

        return run_service(name, config_path, state_dir, passphrase_file)


def _check_binary_location(binary: Path, environ: dict[str, str], *, unsafe: bool) -> list[str]:
    """A service binary anyone can replace is a privilege escalation: only admin-owned folders."""
    roots = [environ.get(k) for k in ("PROGRAMFILES", "PROGRAMFILES(X86)", "SYSTEMROOT")]
    target = PureWindowsPath(str(binary))
    if any(r and target.is_relative_to(PureWindowsPath(r)) for r in roots):
        return []
    if not unsafe:
        raise UsageError(
            f"{binary} is not under Program Files; copy midbox there (only administrators can replace it) "
            "or pass --unsafe-binary-location"
        )
    return [f"warning: unsafe: the service runs {binary}, outside Program Files"]


def _check_state_dir(state_dir: Path, environ: dict[str, str]) -> None:
    """Install replaces the state dir's access list: never on a drive root or a system folder."""
    target = PureWindowsPath(str(state_dir))
    shared = [environ.get(k) for k in ("PROGRAMDATA", "PROGRAMFILES", "SYSTEMROOT", "USERPROFILE")]
    if target == PureWindowsPath(target.anchor) or any(r and target == PureWindowsPath(r) for r in shared):
        raise UsageError(f"{state_dir} is a shared folder; give midbox its own, e.g. %ProgramData%\\midbox")
