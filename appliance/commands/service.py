"""``midbox service render-unit``: the systemd unit for a verified config."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from appliance.commands.common import CliEnv, add_leaf


def register(
    sub: argparse._SubParsersAction,  # type: ignore[type-arg]
    common: argparse.ArgumentParser,
) -> None:
    group = sub.add_parser("service", help="host integration (systemd)")
    leaves = group.add_subparsers(dest="service_command", metavar="COMMAND", required=True)
    p = add_leaf(
        leaves,
        "render-unit",
        common,
        _render_unit,
        "print the systemd unit for a verified config (egress limited to what it allows)",
    )
    p.add_argument("--config", type=Path, required=True, help="the signed config the unit will run")
    p.add_argument("--binary", type=Path, default=None, help="path of the midbox binary (default: this one)")


def _render_unit(args: argparse.Namespace, env: CliEnv) -> int:
    import datetime as dt

    from appliance.config.verify import load_verified_config
    from appliance.unit import nameservers, render, resolve

    config_path = args.config.resolve()
    # Verified, not committed: rendering a unit must not move the rollback counter.
    config = load_verified_config(config_path, env.state_dir, dt.datetime.now(dt.UTC), commit=False)
    try:
        resolv_conf = Path("/etc/resolv.conf").read_text(encoding="utf-8", errors="replace")
    except OSError:
        resolv_conf = ""
    binary = args.binary or Path(sys.executable if getattr(sys, "frozen", False) else "/usr/local/bin/midbox")
    env.stdout.write(
        render(
            config,
            binary=binary.resolve() if args.binary else binary,
            config_path=config_path,
            state_dir=env.state_dir.resolve(),
            resolver=resolve,
            dns=nameservers(resolv_conf),
        )
    )
    return 0
