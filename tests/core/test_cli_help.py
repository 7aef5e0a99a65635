"""Every command's and leaf's ``--help`` prints usage and exits 0 (argparse %-formats help text, so a
stray ``%ProgramData%`` in one option's help crashed ``doctor --help`` and ``enroll --help``)."""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.cli import build_parser, main

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "build" / "tools"))
from midbox_build import smoke  # noqa: E402


def _children(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def command_paths(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield path
    for name, child in _children(parser).items():
        yield from command_paths(child, (*path, name))


def _parser_at(path: tuple[str, ...]) -> argparse.ArgumentParser:
    parser = build_parser()
    for name in path:
        parser = _children(parser)[name]
    return parser


PATHS = list(command_paths(build_parser()))


def test_the_tree_is_walked() -> None:
    # The walk must reach the leaves that crashed, or a passing test proves nothing.
    assert ("doctor",) in PATHS and ("enroll",) in PATHS and ("creds", "add") in PATHS
    assert len(PATHS) > 30


@pytest.mark.parametrize("path", PATHS, ids=lambda p: " ".join(p) or "midbox")
def test_help_exits_zero_and_prints_usage(path: tuple[str, ...]) -> None:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = main([*path, "--help"])
    assert rc == 0
    assert out.getvalue().startswith("usage: midbox")
    # What build/smoke reads from the frozen binary's help must name exactly this node's children.
    assert smoke.subcommands(out.getvalue()) == list(_children(_parser_at(path)))


def test_smoke_walks_every_help_of_a_binary(tmp_path: Path) -> None:
    # build/smoke runs the same walk on the frozen binary; here a wrapper around the source stands in.
    wrapper = tmp_path / "midbox"
    wrapper.write_text(
        f'#!/bin/sh\nPYTHONPATH={os.environ.get("PYTHONPATH", str(REPO))} exec {sys.executable} -m appliance "$@"\n'
    )
    wrapper.chmod(0o755)
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    outcomes = smoke.help_outcomes(wrapper, state)
    assert [o.detail for o in outcomes if not o.ok] == []
    assert {o.check.args[:-1] for o in outcomes} == set(PATHS)
