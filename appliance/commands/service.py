"""``midbox service ...``: host integration. systemd on Linux, the Service Control Manager on Windows.

``install`` verifies the config first (without moving the rollback counter), so a service is
never installed on a config the appliance would refuse. ``run`` is the entry the Windows SCM
starts; on Linux systemd runs ``midbox run`` directly.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from appliance.commands.common import CliEnv, add_leaf, emit_json
from appliance.commands.doctor import DEFAULT_CONFIG_HELP, default_config
from appliance.config.model import Config
from appliance.errors import EXIT_CHECK_FAILED
from appliance.hostservice import Report

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
    from appliance.hostservice import InstallRequest
    from appliance.servicemanager import service_manager
    from appliance.systemd import check_service_name

    check_service_name(args.name)
    config_path = _config(args, env).resolve()
    request = InstallRequest(
        name=args.name,
        config_path=config_path,
        state_dir=env.state_dir,
        binary=args.binary,
        start=not args.no_start,
        force=args.force,
        virtual_account=args.virtual_account,
        unsafe_binary_location=args.unsafe_binary_location,
        passphrase_file=args.passphrase_file,
        environ=dict(env.environ),
    )
    # Never a service on a config the appliance would refuse: each manager verifies it after its own checks.
    report = service_manager(args.unit_dir).install(
        request, lambda: _verified(config_path, env), lambda: _unit_text(config_path, args.binary, env)
    )
    _print_report(report, env)
    return 0


def _uninstall(args: argparse.Namespace, env: CliEnv) -> int:
    from appliance.servicemanager import service_manager
    from appliance.systemd import check_service_name

    check_service_name(args.name)
    _print_report(service_manager(args.unit_dir).uninstall(args.name, force=args.force), env)
    return 0


def _status(args: argparse.Namespace, env: CliEnv) -> int:
    from appliance.servicemanager import service_manager
    from appliance.systemd import check_service_name

    check_service_name(args.name)
    status = service_manager(args.unit_dir).status(args.name)
    if env.json:
        emit_json(env, status)
    else:
        pid = f", pid {status['pid']}" if status.get("pid") else ""
        last = f", last exit code {status['service_exit_code']}" if status.get("service_exit_code") else ""
        where = "installed" if status.get("installed") else "not installed"
        env.stdout.write(f"{args.name}: {where}, {status.get('state')}{pid}{last}\n")
    return 0 if status.get("running") else EXIT_CHECK_FAILED


def _run(args: argparse.Namespace, env: CliEnv) -> int:
    from appliance.servicemanager import service_manager

    return service_manager(None).run(args.name, _config(args, env), env.state_dir, args.passphrase_file)


def _print_report(report: Report, env: CliEnv) -> None:
    for note in report.notes:
        env.stderr.write(f"midbox: {note}\n")
    for line in report.done:
        env.stdout.write(line + "\n")
    if report.todo:
        env.stdout.write("systemd is not managing this host (or the unit is not in its directory); run:\n")
        for argv in report.todo:
            env.stdout.write("  " + " ".join(argv) + "\n")


def _config(args: argparse.Namespace, env: CliEnv) -> Path:
    return Path(args.config or default_config(env))
