"""``midbox status [--json]``: the running appliance's health, read from STATE/status.json (no socket).

Exit 0 healthy, 1 degraded (the reason is printed), 3 not running or no successful poll within three
poll intervals, so a monitoring check can use the exit code alone.
"""

from __future__ import annotations

import argparse
import time

from appliance.commands.common import CliEnv, add_leaf, emit_json


def register(
    sub: argparse._SubParsersAction,  # type: ignore[type-arg]
    common: argparse.ArgumentParser,
) -> None:
    add_leaf(
        sub,
        "status",
        common,
        _status,
        "the running appliance's health from its status file: exit 0 healthy, 1 degraded, 3 down",
    )


def _status(args: argparse.Namespace, env: CliEnv) -> int:
    from appliance.status_file import EXIT_HEALTHY, judge, read_status

    status = read_status(env.state_dir)
    verdict = judge(status, time.time())
    if env.json:
        emit_json(env, {"exit": verdict.code, "verdict": verdict.reason, "status": status})
        return verdict.code
    word = {0: "healthy", 1: "degraded", 3: "down"}.get(verdict.code, "unknown")
    if status is not None:
        cfg = status.get("config") if isinstance(status.get("config"), dict) else {}
        assert isinstance(cfg, dict)
        print(
            f"midbox {status.get('version', '?')} as {cfg.get('appliance', '?')}, state "
            f"{status.get('state', '?')}, config version {cfg.get('version', '?')} "
            f"(expires {cfg.get('expires', '?')}), "
            f"last successful poll {status.get('last_poll_ok') or 'never'}",
            file=env.stdout,
        )
        print(
            f"outbox {status.get('outbox_depth', '?')}, journal {status.get('journal_depth', '?')}, "
            f"audit head {status.get('audit_head', '?')}, certificate expires "
            f"{status.get('certificate_expires') or 'n/a'}",
            file=env.stdout,
        )
    if verdict.code == EXIT_HEALTHY:
        print(word, file=env.stdout)
    else:
        hint = "" if status is None else f" (status file of {status.get('written_at', '?')})"
        print(f"{word}: {verdict.reason}{hint}", file=env.stdout)
    return verdict.code
