"""``midbox doctor [--config CONFIG]``: check the host, the config, the certificates and the instance."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from appliance.commands.common import CliEnv, add_leaf

DEFAULT_CONFIG = Path("/etc/midbox/midbox.toml")
DEFAULT_CONFIG_HELP = f"{DEFAULT_CONFIG}; on Windows %ProgramData%\\midbox\\midbox.toml"


def default_config(env: CliEnv) -> Path:
    """Where the signed config lives unless --config says otherwise (beside the state on Windows,
    whose %ProgramData%\\midbox the service installer restricts to SYSTEM and Administrators)."""
    if os.name == "nt":
        return Path(env.environ.get("PROGRAMDATA", r"C:\ProgramData")) / "midbox" / "midbox.toml"
    return DEFAULT_CONFIG


def register(
    sub: argparse._SubParsersAction,  # type: ignore[type-arg]
    common: argparse.ArgumentParser,
) -> None:
    p = add_leaf(
        sub,
        "doctor",
        common,
        _doctor,
        "check the host: permissions, trust root, config, certificates, clock, the instance",
    )
    p.add_argument(
        "--config", type=Path, default=None, help=f"the signed config (default {DEFAULT_CONFIG_HELP})"
    )


def _doctor(args: argparse.Namespace, env: CliEnv) -> int:
    import asyncio
    import datetime as dt

    from appliance import doctor
    from appliance.errors import EXIT_CHECK_FAILED, EXIT_UNREACHABLE

    now = dt.datetime.now(dt.UTC)
    findings = doctor.check_state_dir(env.state_dir) + doctor.check_trust_root(env.state_dir)
    config_path: Path = args.config or default_config(env)
    if args.config is None and not config_path.exists():
        findings.append(doctor.Finding(doctor.Level.WARN, "config", f"none at {config_path}; pass --config"))
    else:
        checked, config = doctor.check_config(config_path, env.state_dir, now)
        findings += checked
        if config is not None:
            credentials = env.environ.get("CREDENTIALS_DIRECTORY")
            password = doctor.host_key_password(env.state_dir, Path(credentials) if credentials else None)
            findings += doctor.check_certificates(config, now)
            findings += doctor.check_client_key(config, config_path, password)
            findings += asyncio.run(doctor.check_instance(config, config.limits(), now, password))
    if env.json:
        for f in findings:
            env.stdout.write(
                json.dumps({"level": f.level.value, "check": f.check, "detail": f.detail}) + "\n"
            )
    else:
        for f in findings:
            env.stdout.write(f"{f.level.value:<4}  {f.check:<18}  {f.detail}\n")
    failed = [f for f in findings if f.level is doctor.Level.FAIL]
    if not failed:
        return 0
    return EXIT_UNREACHABLE if all(f.unreachable for f in failed) else EXIT_CHECK_FAILED
