"""The composition root of the command line: parse, read the environment once, dispatch, map errors."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import TextIO

from appliance import __version__
from appliance.commands.common import CliEnv
from appliance.errors import EXIT_USAGE, MidboxError

DEFAULT_STATE_DIR_POSIX = "/var/lib/midbox"

# Handlers that work on the state dir. Run by root on a state dir the service user owns, they act as
# that user (hardening.runas), so what they write stays readable by the service. ``run`` drops root
# for good; enroll acts as the owner only for the state dir (its key goes to /etc/midbox as root).
# A module name alone covers every handler in it. tests/build/test_install_as_service_user.py
# checks each entry still names a handler.
AS_STATE_OWNER = frozenset(
    {
        "appliance.commands.audit",
        "appliance.commands.creds",
        "appliance.commands.hosts",
        "appliance.commands.trust._init",
        "appliance.commands.trust._rotate",
        "appliance.commands.trust._show",
        "appliance.commands.config_cmd._verify",
        "appliance.commands.policy._explain",
        "appliance.commands.doctor._doctor",
    }
)
DROPS_ROOT = frozenset({"appliance.commands.run._run"})


def _default_state_dir(environ: dict[str, str]) -> Path:
    if environ.get("MIDBOX_STATE_DIR"):
        return Path(environ["MIDBOX_STATE_DIR"])
    if os.name == "nt":
        return Path(environ.get("PROGRAMDATA", r"C:\ProgramData")) / "midbox"
    return Path(DEFAULT_STATE_DIR_POSIX)


def _common_parent() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--state-dir", type=Path, default=None, help="state directory (env MIDBOX_STATE_DIR)")
    common.add_argument("--json", action="store_true", help="print data as JSON")
    common.add_argument("-v", "--verbose", action="count", default=0, help="more log detail (repeat: more)")
    common.add_argument("-q", "--quiet", action="count", default=0, help="less log detail (repeat for less)")
    common.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="log lines as text or one JSON object per line ('run --json' means json)",
    )
    return common


def _source_commit() -> str:
    # Written into the package by the release build; a source checkout says so.
    try:
        from appliance import _build_info  # type: ignore[attr-defined]

        return str(_build_info.SOURCE_COMMIT)
    except ImportError:
        return "source"


def build_parser() -> argparse.ArgumentParser:
    from appliance.commands import registry

    parser = argparse.ArgumentParser(prog="midbox", description="midbox: a hardened ServiceNow MID Server")
    parser.add_argument("--version", action="store_true", help="print the version and source commit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    common = _common_parent()
    for register in registry.REGISTRARS:
        register(sub, common)
    return parser


def _as_state_owner(handler: object, state_dir: Path) -> None:
    """Root on the service user's state dir becomes that user first (see AS_STATE_OWNER)."""
    from hardening.runas import act_as, drop_to, state_owner

    module, name = getattr(handler, "__module__", ""), getattr(handler, "__name__", "")
    qualified = f"{module}.{name}"
    if qualified not in DROPS_ROOT and qualified not in AS_STATE_OWNER and module not in AS_STATE_OWNER:
        return
    owner = state_owner(state_dir)
    if owner is None:
        return
    logging.getLogger(__name__).info("acting as %s, the owner of %s", owner.name, state_dir)
    from appliance.preload import before_identity_change

    before_identity_change()
    if qualified in DROPS_ROOT:
        drop_to(owner)
    else:
        act_as(owner)


def main(
    argv: Sequence[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """The whole command line. The keyword arguments are the process's surroundings, so tests (and
    embedders) run a command in-process with their own environment and streams; by default they are
    this process's own."""
    environ = dict(os.environ if environ is None else environ)
    stdin = sys.stdin if stdin is None else stdin
    stdout = sys.stdout if stdout is None else stdout
    stderr = sys.stderr if stderr is None else stderr
    parser = build_parser()
    try:
        # argparse writes help and usage errors to sys.stdout/sys.stderr itself.
        with redirect_stdout(stdout), redirect_stderr(stderr):
            args = parser.parse_args(argv)
    except SystemExit as e:  # argparse exits 2 on usage errors, 0 on --help
        return int(e.code) if isinstance(e.code, int) else EXIT_USAGE
    if args.version:
        print(f"midbox {__version__} ({_source_commit()})", file=stdout)
        return 0
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(stderr)
        return EXIT_USAGE
    # Every command's parser, help text included, is garbage once parsed; ``run`` lives for months.
    del parser
    verbosity = args.verbose - args.quiet
    from appliance.logsetup import configure

    json_logs = args.log_format == "json" or (args.json and args.command == "run")
    configure(verbosity, "json" if json_logs else "text", environ, stderr)
    env = CliEnv(
        state_dir=args.state_dir or _default_state_dir(environ),
        json=args.json,
        verbosity=verbosity,
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        environ=environ,
    )
    try:
        _as_state_owner(handler, env.state_dir)
        return int(handler(args, env))
    except MidboxError as e:  # every error meant for the user: one line, never a traceback
        print(f"midbox: {e}", file=stderr)
        return e.exit_code
    except KeyboardInterrupt:
        return 130
