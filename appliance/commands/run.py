"""``midbox run --config CONFIG``: the appliance in the foreground until SIGTERM/SIGINT.

Start order is the order of trust: harden the process, check the state dir, open the audit log,
verify the signed config (refuse to start on any failure), open the credential store, then poll.
SIGHUP (or a change of the config file, or ``midbox reload``) verifies the new config first; the
appliance restarts its runner on it only if it verifies, and otherwise keeps running on the old one.

``midbox reload [--config CONFIG]``: ask the running appliance to do that now and print its verdict
(through two files in the state dir; see appliance/reload_request.py).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from appliance.commands.common import CliEnv, add_leaf
from appliance.commands.doctor import DEFAULT_CONFIG_HELP, default_config


def register(
    sub: argparse._SubParsersAction,  # type: ignore[type-arg]
    common: argparse.ArgumentParser,
) -> None:
    run = add_leaf(sub, "run", common, _run, "run the appliance in the foreground until SIGTERM/SIGINT")
    run.add_argument(
        "--config",
        type=Path,
        default=None,
        help=f"the signed config, CONFIG.sig beside it (default {DEFAULT_CONFIG_HELP})",
    )
    run.add_argument(
        "--passphrase-file",
        type=Path,
        default=None,
        help="the credential store's operator passphrase, if it has one (a file, never argv)",
    )
    run.add_argument(
        "--metrics-textfile",
        type=Path,
        default=None,
        metavar="PATH",
        help="also write the health in Prometheus text format to PATH after every poll "
        "(node_exporter's textfile collector directory, a name ending in .prom)",
    )


def _run(args: argparse.Namespace, env: CliEnv) -> int:
    import asyncio
    import os

    from appliance.sdnotify import NotifySettings
    from appliance.service import ServiceOptions, serve

    options = ServiceOptions(
        config_path=args.config or default_config(env),
        state_dir=env.state_dir,
        passphrase_file=args.passphrase_file,
        metrics_textfile=args.metrics_textfile,
        notify=NotifySettings.from_environ(env.environ, os.getpid()),
        credentials_directory=Path(env.environ["CREDENTIALS_DIRECTORY"])
        if env.environ.get("CREDENTIALS_DIRECTORY")
        else None,
    )
    return asyncio.run(serve(options))


def register_reload(
    sub: argparse._SubParsersAction,  # type: ignore[type-arg]
    common: argparse.ArgumentParser,
) -> None:
    p = add_leaf(
        sub,
        "reload",
        common,
        _reload,
        "ask the running appliance to verify and load its config now; print the verdict",
    )
    p.add_argument(
        "--config", type=Path, default=None, help=f"the config it runs on (default {DEFAULT_CONFIG_HELP})"
    )
    p.add_argument(
        "--wait", type=float, default=None, metavar="S", help="seconds to wait for the verdict (max 30)"
    )


def _reload(args: argparse.Namespace, env: CliEnv) -> int:
    from appliance.errors import EXIT_CHECK_FAILED, EXIT_UNREACHABLE, UsageError
    from appliance.limits import RELOAD_ANSWER_TIMEOUT_S
    from appliance.reload_request import wait_answer, write_request

    config = (args.config or default_config(env)).absolute()
    try:
        request_id = write_request(env.state_dir, config)
    except OSError as e:
        raise UsageError(
            f"cannot write a reload request in {env.state_dir}: {e.strerror}; run as the service user "
            f"or root, with --state-dir set to the appliance's state dir"
        ) from e
    wait_s = min(args.wait, RELOAD_ANSWER_TIMEOUT_S) if args.wait is not None else RELOAD_ANSWER_TIMEOUT_S
    answer = wait_answer(env.state_dir, request_id, wait_s)
    if answer is None:
        print(
            f"midbox: no running appliance answered within {wait_s:g} s; check it runs on "
            f"state dir {env.state_dir} (systemctl status midbox)",
            file=env.stderr,
        )
        return EXIT_UNREACHABLE
    if Path(answer.config).absolute() != config:
        print(
            f"midbox: the running appliance uses {answer.config}, not {config}; edit and sign that file",
            file=env.stderr,
        )
        return EXIT_CHECK_FAILED
    if answer.verdict == "refused":
        print(
            f"midbox: reload refused, still on config version {answer.version}: {answer.reason}",
            file=env.stderr,
        )
        return EXIT_CHECK_FAILED
    word = "reloaded: now on" if answer.verdict == "reloaded" else "unchanged: still on"
    print(f"{word} config version {answer.version}", file=env.stdout)
    return 0
