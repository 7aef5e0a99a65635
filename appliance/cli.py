"""The composition root of the command line: parse, read the environment once, dispatch, map errors."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from appliance import __version__
from appliance.commands.common import CliEnv
from appliance.errors import EXIT_CHECK_FAILED, EXIT_USAGE, ApplianceError

DEFAULT_STATE_DIR_POSIX = "/var/lib/midbox"


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
    common.add_argument("-v", "--verbose", action="count", default=0)
    common.add_argument("-q", "--quiet", action="count", default=0)
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


def main(argv: Sequence[str] | None = None) -> int:
    environ = dict(os.environ)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse exits 2 on usage errors, 0 on --help
        return int(e.code) if isinstance(e.code, int) else EXIT_USAGE
    if args.version:
        print(f"midbox {__version__} ({_source_commit()})")
        return 0
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    verbosity = args.verbose - args.quiet
    from appliance.logsetup import configure

    json_logs = args.log_format == "json" or (args.json and args.command == "run")
    configure(verbosity, "json" if json_logs else "text", environ, sys.stderr)
    env = CliEnv(
        state_dir=args.state_dir or _default_state_dir(environ),
        json=args.json,
        verbosity=verbosity,
        stdin=sys.stdin,
        stdout=sys.stdout,
        stderr=sys.stderr,
        environ=environ,
    )
    try:
        return int(handler(args, env))
    except ApplianceError as e:
        print(f"midbox: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        return 130
    except Exception as e:
        # Hardening errors and anything else: one line, never a traceback with values in it.
        from hardening.errors import HardeningError

        if isinstance(e, HardeningError):
            print(f"midbox: {e}", file=sys.stderr)
            return EXIT_CHECK_FAILED
        raise
