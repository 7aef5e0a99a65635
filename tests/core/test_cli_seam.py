"""``main``'s seam: a command run in-process takes the environment and streams it is given."""

from __future__ import annotations

import os
from pathlib import Path

from tests.support.cli import run_cli


def test_the_given_environment_and_streams_are_the_ones_used(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    added = run_cli(
        "creds",
        "add",
        "web",
        "--type",
        "http-basic",
        "--user",
        "u",
        environ={"MIDBOX_STATE_DIR": str(a)},
        stdin="s3cret\n",
    )
    assert added.code == 0, added.err
    assert "web" in run_cli("creds", "list", environ={"MIDBOX_STATE_DIR": str(a)}).out
    assert "web" not in run_cli("creds", "list", environ={"MIDBOX_STATE_DIR": str(b)}).out
    assert os.environ.get("MIDBOX_STATE_DIR") != str(a)  # nothing leaked into this process


def test_usage_errors_and_the_version_go_to_the_given_streams() -> None:
    bad = run_cli("no-such-command")
    assert bad.code == 2 and "invalid choice" in bad.err and bad.out == ""
    version = run_cli("--version")
    assert version.code == 0 and version.out.startswith("midbox ") and version.err == ""
