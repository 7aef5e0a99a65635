"""``midbox service ...``: host integration. systemd on Linux, the Service Control Manager on Windows.

``install`` verifies the config first (without moving the rollback counter), so a service is
never installed on a config the appliance would refuse. ``run`` is the entry the Windows SCM
starts; on Linux systemd runs ``midbox run`` directly.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path, PureWindowsPath

from appliance.commands.common import CliEnv, add_leaf, emit_json
from appliance.commands.doctor import DEFAULT_CONFIG_HELP, default_config
from appliance.config.model import Config
from appliance.errors import EXIT_CHECK_FAILED, ApplianceError, UsageError

DEFAULT_NAME = "midbox"


def register(
    sub: argparse._SubParsersAction,  # type: ignore[type-arg]
    common: argparse.ArgumentParser,
) -> None:
    group = sub.add_parser("service", help="host integration (systemd unit, Windows service)")
    leaves = group.add_subparsers(dest="service_command", metavar="COMMAND", required=True)
    p = add_leaf(
        leaves,
        "render-unit",
        common,
        _render_unit,
        "print the systemd unit for a verified config (egress limited to what it allows)",
    )
    p.add_argument(
        "--config",
        type=Path,
        default=None,
        help=f"the signed config the unit will run (default {DEFAULT_CONFIG_HELP})",
    )
    p.add_argument("--binary", type=Path, default=None, help="path of the midbox binary (default: this one)")

    p = add_leaf(leaves, "install", common, _install, "install and start the service for a verified config")
    p.add_argument(
        "--config",
        type=Path,
        default=None,
        help=f"the signed config the service will run (default {DEFAULT_CONFIG_HELP})",
    )
    p.add_argument("--name", default=DEFAULT_NAME, help="service name (default: midbox)")
    p.add_argument("--binary", type=Path, default=None, help="path of the midbox binary (default: this one)")
    p.add_argument("--no-start", action="store_true", help="install and enable, but do not start now")
    p.add_argument("--force", action="store_true", help="Linux: replace an existing, different unit file")
    p.add_argument("--unit-dir", type=Path, default=None, help="Linux: where to write the unit")
    p.add_argument(
        "--virtual-account",
        action="store_true",
        help="Windows: run as NT SERVICE\\NAME instead of LocalSystem (least privilege; grant it the "
        "state dir, config and key files first)",
    )
    p.add_argument(
        "--unsafe-binary-location",
        action="store_true",
        help="Windows: allow a binary outside Program Files (anyone who can replace it runs as the service)",
    )
    p.add_argument(
        "--passphrase-file",
        type=Path,
        default=None,
        help="Windows: the credential store's passphrase file, passed to the service as a path (never the "
        "passphrase itself); keep it in the restricted state folder",
    )

    p = add_leaf(leaves, "uninstall", common, _uninstall, "stop the service if it runs, then remove it")
    p.add_argument("--name", default=DEFAULT_NAME, help="service name (default: midbox)")
    p.add_argument("--force", action="store_true", help="Linux: remove a unit midbox did not write")
    p.add_argument("--unit-dir", type=Path, default=None, help="Linux: where the unit is")

    p = add_leaf(
        leaves, "status", common, _status, "print the service's state and pid (exit 0 only if running)"
    )
    p.add_argument("--name", default=DEFAULT_NAME, help="service name (default: midbox)")
    p.add_argument("--unit-dir", type=Path, default=None, help="Linux: where the unit is")

    p = add_leaf(leaves, "run", common, _run, "Windows: the entry the Service Control Manager starts")
    p.add_argument(
        "--config", type=Path, default=None, help=f"the signed config file (default {DEFAULT_CONFIG_HELP})"
    )
    p.add_argument("--name", default=DEFAULT_NAME, help="service name (default: midbox)")
    p.add_argument(
        "--passphrase-file", type=Path, default=None, help="the credential store's passphrase file"
    )


def _verified(config_path: Path, env: CliEnv) -> Config:
    import datetime as dt

    from appliance.config.verify import load_verified_config

    # Verified, not committed: rendering or installing must not move the rollback counter.
    return load_verified_config(config_path, env.state_dir, dt.datetime.now(dt.UTC), commit=False)


def _unit_text(config_path: Path, binary_arg: Path | None, env: CliEnv) -> str:
    from appliance.unit import nameservers, render, resolve

    config = _verified(config_path, env)
    try:
        resolv_conf = Path("/etc/resolv.conf").read_text(encoding="utf-8", errors="replace")
    except OSError:
        resolv_conf = ""
    binary = binary_arg or Path(sys.executable if getattr(sys, "frozen", False) else "/usr/local/bin/midbox")
    return render(
        config,
        binary=binary.resolve() if binary_arg else binary,
        config_path=config_path,
        state_dir=env.state_dir.resolve(),
        resolver=resolve,
        dns=nameservers(resolv_conf),
    )


def _render_unit(args: argparse.Namespace, env: CliEnv) -> int:
    env.stdout.write(_unit_text(_config(args, env).resolve(), args.binary, env))
    return 0


def _install(args: argparse.Namespace, env: CliEnv) -> int:
    from appliance.systemd import check_service_name

    check_service_name(args.name)
    if sys.platform == "win32":
        return _install_windows(args, env)
    from appliance.systemd import Systemd, install_unit

    if args.virtual_account or args.unsafe_binary_location or args.passphrase_file:
        raise UsageError(
            "--virtual-account, --unsafe-binary-location and --passphrase-file are Windows options"
        )
    text = _unit_text(_config(args, env).resolve(), args.binary, env)
    systemd = Systemd.detect(args.unit_dir)
    outcome = install_unit(systemd, args.name, text, force=args.force, start=not args.no_start)
    _print_outcome(outcome.done, outcome.todo, env)
    return 0


def _install_windows(args: argparse.Namespace, env: CliEnv) -> int:
    from appliance.winscm import Scm, midbox_spec
    from hardening.perms import ensure_private_dir
    from hardening.winacl import restrict_dir, service_sid

    config_path = _config(args, env).resolve()
    state_dir = env.state_dir.resolve()
    _check_state_dir(state_dir, env)
    if args.binary is not None:
        launcher = [str(args.binary.resolve())]
    elif getattr(sys, "frozen", False):
        launcher = [sys.executable]
    else:  # a source install: the interpreter runs the package
        launcher = [sys.executable, "-m", "appliance"]
    _check_binary_location(Path(launcher[0]), env, unsafe=args.unsafe_binary_location)
    _verified(config_path, env)
    ensure_private_dir(state_dir)
    # SYSTEM and Administrators only (and the service's own SID when it runs as NT SERVICE\NAME).
    try:
        restrict_dir(state_dir, [service_sid(args.name)] if args.virtual_account else [])
    except OSError as e:
        raise ApplianceError(
            f"cannot restrict {state_dir} to SYSTEM and Administrators ({e}); run from an elevated prompt"
        ) from e
    spec = midbox_spec(
        launcher,
        args.name,
        str(config_path),
        str(state_dir),
        virtual_account=args.virtual_account,
        passphrase_file=str(args.passphrase_file.resolve()) if args.passphrase_file else None,
    )
    scm = Scm()
    for note in scm.install(spec):
        env.stderr.write(f"midbox: note: {note}\n")
    env.stdout.write(f"installed service {args.name}: {spec.command_line}\n")
    if not args.no_start:
        scm.start(args.name)
        env.stdout.write(f"started service {args.name} ({scm.query(args.name).state})\n")
    return 0


def _check_binary_location(binary: Path, env: CliEnv, *, unsafe: bool) -> None:
    """A service binary anyone can replace is a privilege escalation: only admin-owned folders."""
    roots = [env.environ.get(k) for k in ("PROGRAMFILES", "PROGRAMFILES(X86)", "SYSTEMROOT")]
    target = PureWindowsPath(str(binary))
    if any(r and target.is_relative_to(PureWindowsPath(r)) for r in roots):
        return
    if not unsafe:
        raise UsageError(
            f"{binary} is not under Program Files; copy midbox there (only administrators can replace it) "
            "or pass --unsafe-binary-location"
        )
    env.stderr.write(f"midbox: warning: unsafe: the service runs {binary}, outside Program Files\n")


def _check_state_dir(state_dir: Path, env: CliEnv) -> None:
    """Install replaces the state dir's access list: never on a drive root or a system folder."""
    target = PureWindowsPath(str(state_dir))
    shared = [env.environ.get(k) for k in ("PROGRAMDATA", "PROGRAMFILES", "SYSTEMROOT", "USERPROFILE")]
    if target == PureWindowsPath(target.anchor) or any(r and target == PureWindowsPath(r) for r in shared):
        raise UsageError(f"{state_dir} is a shared folder; give midbox its own, e.g. %ProgramData%\\midbox")


def _uninstall(args: argparse.Namespace, env: CliEnv) -> int:
    from appliance.systemd import check_service_name

    check_service_name(args.name)
    if sys.platform == "win32":
        from appliance.limits import SERVICE_STOP_TIMEOUT_S
        from appliance.winscm import Scm

        before = Scm().uninstall(args.name, SERVICE_STOP_TIMEOUT_S)
        was = "" if before.state == "stopped" else f" (stopped it; it was {before.state})"
        env.stdout.write(f"removed service {args.name}{was}\n")
        return 0
    from appliance.systemd import Systemd, uninstall_unit

    outcome = uninstall_unit(Systemd.detect(args.unit_dir), args.name, force=args.force)
    _print_outcome(outcome.done, outcome.todo, env)
    return 0


def _status(args: argparse.Namespace, env: CliEnv) -> int:
    from appliance.systemd import check_service_name

    check_service_name(args.name)
    if sys.platform == "win32":
        from appliance.winscm import Scm

        state = Scm().query(args.name)  # NotInstalledError: exit 1
        status = state.as_dict() | {"installed": True, "running": state.state == "running"}
    else:
        from appliance.systemd import Systemd, unit_status

        status = unit_status(Systemd.detect(args.unit_dir), args.name)
    if env.json:
        emit_json(env, status)
    else:
        pid = f", pid {status['pid']}" if status.get("pid") else ""
        last = f", last exit code {status['service_exit_code']}" if status.get("service_exit_code") else ""
        where = "installed" if status.get("installed") else "not installed"
        env.stdout.write(f"{args.name}: {where}, {status.get('state')}{pid}{last}\n")
    return 0 if status.get("running") else EXIT_CHECK_FAILED


def _run(args: argparse.Namespace, env: CliEnv) -> int:
    if sys.platform != "win32":
        raise UsageError("'service run' is the Windows service entry; systemd runs 'midbox run --config ...'")
    from appliance.winservice import run_service

    return run_service(args.name, _config(args, env), env.state_dir, args.passphrase_file)


def _print_outcome(done: list[str], todo: list[list[str]], env: CliEnv) -> None:
    for line in done:
        env.stdout.write(line + "\n")
    if todo:
        env.stdout.write("systemd is not managing this host (or the unit is not in its directory); run:\n")
        for argv in todo:
            env.stdout.write("  " + " ".join(argv) + "\n")


def _config(args: argparse.Namespace, env: CliEnv) -> Path:
    return Path(args.config or default_config(env))
