"""``midbox doctor [--config CONFIG]``: check the host, the config, the certificates and the instance."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING

from appliance.commands.common import CliEnv, add_leaf, emit_json

if TYPE_CHECKING:
    from appliance.config.model import Config
    from appliance.doctor import Finding

DEFAULT_CONFIG = Path("/etc/midbox/midbox.toml")
# Goes into argparse help, which %-formats it: the Windows variable is written %%-escaped.
DEFAULT_CONFIG_HELP = f"{DEFAULT_CONFIG}; on Windows %%ProgramData%%\\midbox\\midbox.toml"


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
            findings += _aliases(config, env)
            findings += doctor.check_client_key(config, config_path, password)
            if os.name == "posix" and os.geteuid() == 0:  # root reads anything: check as the unit's User=
                from appliance.doctor_access import check_service_user, unit_user

                user = unit_user()
                findings += check_service_user(config, env.state_dir, user) if user else []
            findings += asyncio.run(doctor.check_instance(config, config.limits(), now, password))
    if env.json:
        for f in findings:
            emit_json(env, {"level": f.level.value, "check": f.check, "detail": f.detail})
    else:
        for f in findings:
            env.stdout.write(f"{f.level.value:<4}  {f.check:<18}  {f.detail}\n")
    failed = [f for f in findings if f.level is doctor.Level.FAIL]
    if not failed:
        return 0
    return EXIT_UNREACHABLE if all(f.unreachable for f in failed) else EXIT_CHECK_FAILED


def _aliases(config: Config, env: CliEnv) -> list[Finding]:
    from appliance.aliases import alias_problems, store_types
    from appliance.doctor import Finding, Level

    creds_dir = env.environ.get("CREDENTIALS_DIRECTORY")
    types = store_types(env.state_dir, Path(creds_dir) if creds_dir else None)
    if isinstance(types, str):
        return [Finding(Level.WARN, "credentials", f"aliases not checked: {types}")]
    problems = alias_problems(config, types)
    if not problems:
        named = sum(len(a.credentials) for a in config.settings.allow)
        return [Finding(Level.OK, "credentials", f"all {named} alias(es) the rules name are in the store")]
    return [Finding(Level.FAIL, "credentials", p) for p in problems]
