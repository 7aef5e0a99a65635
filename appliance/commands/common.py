"""What every command handler receives: the parsed arguments and the resolved environment."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO


@dataclass(frozen=True)
class CliEnv:
    """Everything a handler may know of the outside world, read once by the entry point."""

    state_dir: Path
    json: bool = False
    verbosity: int = 0
    stdin: TextIO = field(default=sys.stdin)
    stdout: TextIO = field(default=sys.stdout)
    stderr: TextIO = field(default=sys.stderr)
    environ: dict[str, str] = field(default_factory=dict)


Handler = Callable[[argparse.Namespace, CliEnv], int]


def emit_json(env: CliEnv, doc: object) -> None:
    """``--json`` output: one JSON document on one line. A command's result is one call; a stream
    (doctor's findings, audit show's runs) is one call per record, so it reads as JSON lines."""
    env.stdout.write(json.dumps(doc) + "\n")


def add_leaf(
    sub: argparse._SubParsersAction,  # type: ignore[type-arg]
    name: str,
    common: argparse.ArgumentParser,
    handler: Handler,
    help_text: str,
) -> argparse.ArgumentParser:
    """Add a leaf command that takes the common options (--state-dir, --json, -v/-q)."""
    parser: argparse.ArgumentParser = sub.add_parser(
        name, parents=[common], help=help_text, description=help_text
    )
    parser.set_defaults(handler=handler)
    return parser


def read_capped(path: Path, cap: int, what: str) -> bytes:
    """At most ``cap + 1`` bytes of a file the user named, so the size check that follows sees an
    oversize file as oversize; an unreadable file is a usage error naming it."""
    from appliance.errors import UsageError
    from hardening.perms import unreadable_hint
    from hardening.runas import as_invoker
    from hardening.smallfile import read_capped as read

    try:
        # Root acting as the service user still reads what root named (hardening.runas).
        with as_invoker():
            return read(path, cap)
    except OSError as e:
        raise UsageError(f"cannot read {what} {path}: {unreadable_hint(path, e)}") from e
