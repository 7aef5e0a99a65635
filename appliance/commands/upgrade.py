"""``midbox upgrade``: install a signed release bundle, restart, and roll back if it does not poll."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from appliance.commands.common import CliEnv, add_leaf, read_capped
from appliance.errors import EXIT_CHECK_FAILED, UsageError

if TYPE_CHECKING:
    from collections.abc import Callable

    from appliance.upgrade.flow import Env, Request
    from appliance.upgrade.state import UpgradeState


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:  # type: ignore[type-arg]
    from appliance.limits import UPGRADE_DEADLINE_S

    p = add_leaf(
        sub,
        "upgrade",
        common,
        _upgrade,
        "install a signed release bundle, restart the service, roll back if the new version does not poll",
    )
    p.add_argument("--bundle", type=Path, help="the .tar.gz bundle, or the folder it was unpacked to")
    p.add_argument("--pubkey", type=Path, help="the release public key (minisign format)")
    p.add_argument(
        "--allow-downgrade", action="store_true", help="install a version not newer than the running one"
    )
    p.add_argument(
        "--deadline",
        type=float,
        default=UPGRADE_DEADLINE_S,
        metavar="S",
        help="seconds the new version has for a successful poll before it is rolled back "
        f"(default {UPGRADE_DEADLINE_S:g})",
    )
    p.add_argument("--binary", type=Path, help="the installed binary to replace (default: this one)")
    p.add_argument(
        "--service", default="midbox", help="the service's name for systemd or the SCM (default: midbox)"
    )
    p.add_argument(
        "--restart-command",
        help="restart through another supervisor, e.g. 'sv restart /etc/service/midbox' (no shell)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="only finish (or roll back) an upgrade whose upgrader was interrupted",
    )


def _upgrade(args: argparse.Namespace, env: CliEnv) -> int:
    from appliance.upgrade.flow import Env
    from appliance.upgrade.state import UpgradeError

    lines: list[str] = []

    def say(line: str) -> None:
        lines.append(line)
        if not env.json:
            print(line, file=env.stdout, flush=True)

    uenv = Env(env.state_dir, say)
    if not args.resume and (args.bundle is None or args.pubkey is None):
        raise UsageError("give --bundle and --pubkey (or --resume to finish an interrupted upgrade)")
    target = _target(args)
    request = None if args.resume else _request(args, env, target)
    try:
        state = _locked(request, target, uenv, say)
    except OSError as e:
        # The state dir or the binary's folder not writable here: what was begun is in the state file.
        raise UpgradeError(
            f"cannot write {e.filename or 'a file'} ({e.strerror or type(e).__name__}): run midbox upgrade "
            "as root, then midbox upgrade --resume finishes what was begun"
        ) from e
    if state is None:
        if env.json:
            print(json.dumps({"phase": None, "log": lines}), file=env.stdout)
        return 0
    if env.json:
        doc = {
            "phase": state.phase,
            "from": state.from_version,
            "to": state.to_version,
            "reason": state.reason,
        }
        print(json.dumps({**doc, "log": lines}, sort_keys=True), file=env.stdout)
    else:
        print(f"upgrade {state.phase}: {state.reason or state.to_version}", file=env.stdout)
    return 0 if state.phase == "confirmed" else EXIT_CHECK_FAILED


def _locked(
    request: Request | None, target: Path, uenv: Env, say: Callable[[str], None]
) -> UpgradeState | None:
    """The upgrade (or the resumption), holding the lock; None when there was nothing to resume."""
    from appliance.upgrade.flow import resume, upgrade
    from appliance.upgrade.state import FINISHED, load, upgrade_lock

    with upgrade_lock(target):
        if request is not None:
            return upgrade(request, uenv)
        found = load(target)
        if found is None or found.phase in FINISHED:
            say("no upgrade to finish" + (f": the last one ended {found.phase}" if found else ""))
            return None
        return resume(found, uenv)


def _target(args: argparse.Namespace) -> Path:
    """The installed binary: --binary, or this one when frozen; symlinks resolved (the file is replaced)."""
    target = args.binary
    if target is None:
        if not getattr(sys, "frozen", False):
            raise UsageError("this midbox runs from source: give --binary, the installed binary to replace")
        target = Path(sys.executable)
    target = Path(os.path.realpath(target))
    if not target.is_file():
        raise UsageError(f"{target} is not a file: give --binary, the installed midbox binary")
    return target


def _request(args: argparse.Namespace, env: CliEnv, target: Path) -> Request:
    from appliance import __version__, limits
    from appliance.status_file import read_status
    from appliance.upgrade.flow import Request
    from appliance.upgrade.manager import Restarter
    from hardening.release import ReleaseLimits, parse_public_key
    from hardening.signing.keys import MAX_KEY_FILE_BYTES

    if args.bundle is None or args.pubkey is None:
        raise UsageError("give --bundle and --pubkey (or --resume to finish an interrupted upgrade)")
    if not args.bundle.exists():
        raise UsageError(f"{args.bundle} does not exist: give the path of the downloaded bundle")
    if not 1 <= args.deadline <= limits.UPGRADE_DEADLINE_MAX_S:
        raise UsageError(f"--deadline must be 1..{limits.UPGRADE_DEADLINE_MAX_S:g} seconds")
    key = parse_public_key(read_capped(args.pubkey, MAX_KEY_FILE_BYTES, "the public key"))
    if args.restart_command:
        command = tuple(shlex.split(args.restart_command, posix=os.name != "nt"))
        restarter = Restarter("command", args.service, command)
    else:
        restarter = Restarter("scm" if os.name == "nt" else "systemd", args.service)
    running = _installed_version(target)
    if running is None:
        # No upgrade recorded beside the binary: what the appliance reports (the service user writes
        # that file), else this binary's own version.
        reported = (read_status(env.state_dir) or {}).get("version")
        running = reported if isinstance(reported, str) else __version__
    return Request(
        bundle=args.bundle,
        key=key,
        caps=ReleaseLimits(
            limits.MAX_BUNDLE_BYTES, limits.MAX_BUNDLE_MEMBER_BYTES, limits.MAX_BUNDLE_MEMBERS
        ),
        target=target,
        restarter=restarter,
        deadline_s=float(args.deadline),
        allow_downgrade=bool(args.allow_downgrade),
        current_version=running,
    )


def _installed_version(target: Path) -> str | None:
    """The version the last finished upgrade left installed, from the root-owned state beside it."""
    from appliance.upgrade.state import installed_after, load

    last = load(target)
    if last is None:
        return None
    return installed_after(last)
