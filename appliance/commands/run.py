"""``midbox run --config CONFIG``: the appliance in the foreground until SIGTERM/SIGINT.

Start order is the order of trust: harden the process, check the state dir, open the audit log,
verify the signed config (refuse to start on any failure), open the credential store, then poll.
SIGHUP (or a change of the config file) verifies the new config first; the appliance restarts its
runner on it only if it verifies, and otherwise keeps running on the old one.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from appliance.commands.common import CliEnv, add_leaf


def register(
    sub: argparse._SubParsersAction,  # type: ignore[type-arg]
    common: argparse.ArgumentParser,
) -> None:
    run = add_leaf(sub, "run", common, _run, "run the appliance in the foreground until SIGTERM/SIGINT")
    run.add_argument(
        "--config", type=Path, required=True, help="the signed config file (CONFIG.sig beside it)"
    )
    run.add_argument(
        "--passphrase-file",
        type=Path,
        default=None,
        help="the credential store's operator passphrase, if it has one (a file, never argv)",
    )


def _run(args: argparse.Namespace, env: CliEnv) -> int:
    import asyncio

    from appliance.service import ServiceOptions, serve

    options = ServiceOptions(
        config_path=args.config,
        state_dir=env.state_dir,
        passphrase_file=args.passphrase_file,
        credentials_directory=Path(env.environ["CREDENTIALS_DIRECTORY"])
        if env.environ.get("CREDENTIALS_DIRECTORY")
        else None,
    )
    return asyncio.run(serve(options))
