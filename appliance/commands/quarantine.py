"""``midbox quarantine on|off|status``: stop every probe (heartbeats and the outbox go on), and resume."""

from __future__ import annotations

import argparse

from appliance.commands.common import CliEnv, add_leaf, emit_json
from appliance.errors import EXIT_CHECK_FAILED, UsageError


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:  # type: ignore[type-arg]
    group = sub.add_parser("quarantine", help="stop or resume every probe (heartbeats go on)")
    g = group.add_subparsers(dest="quarantine_command", metavar="COMMAND", required=True)
    on = add_leaf(g, "on", common, _on, "stop every probe within one poll; survives a restart")
    on.add_argument("--reason", default="", help="why (shown in results and the audit log)")
    off = add_leaf(g, "off", common, _off, "let probes run again")
    off.add_argument("--reason", default="", help="why (audit log)")
    add_leaf(g, "status", common, _status, "is this appliance quarantined? (exit 0 no, 1 yes)")


def _on(args: argparse.Namespace, env: CliEnv) -> int:
    from appliance.quarantine import Quarantine

    try:
        state = Quarantine(env.state_dir).set(args.reason or "", "cli")
    except OSError as e:
        raise _unwritable(env, e) from e
    _show(env, state.on, state.reason, "quarantined: the running appliance stops probes at its next poll")
    return 0


def _off(args: argparse.Namespace, env: CliEnv) -> int:
    from appliance.quarantine import Quarantine

    try:
        removed = Quarantine(env.state_dir).clear(args.reason or "", "cli")
    except OSError as e:
        raise _unwritable(env, e) from e
    _show(env, False, "", "quarantine lifted" if removed else "was not quarantined")
    return 0


def _status(args: argparse.Namespace, env: CliEnv) -> int:
    from appliance.quarantine import Quarantine

    state = Quarantine(env.state_dir).read()
    text = f"quarantined since {state.since or '?'} by {state.by}: {state.reason or 'no reason given'}"
    _show(env, state.on, state.reason, text if state.on else "not quarantined")
    return EXIT_CHECK_FAILED if state.on else 0


def _unwritable(env: CliEnv, e: OSError) -> UsageError:
    return UsageError(
        f"cannot write the quarantine file in {env.state_dir} ({e.strerror or type(e).__name__}); pass the "
        "appliance's --state-dir and run as its user"
    )


def _show(env: CliEnv, on: bool, reason: str, text: str) -> None:
    if env.json:
        emit_json(env, {"quarantined": on, "reason": reason})
    else:
        print(text, file=env.stdout)
