"""The man page and bash completion generated from the CLI's argparse tree (build/tools/midbox_build/clidoc.py)."""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from appliance import __version__
from appliance.cli import build_parser

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "build" / "tools"))
from midbox_build.clidoc import render_bash, render_man, tree, walk


def _man() -> str:
    return render_man(build_parser(), __version__)


def _plain(man: str) -> str:
    # troff escapes back to text: \- is a hyphen, \fX a font change, \& nothing.
    return re.sub(r"\\f[BIR]|\\&", "", man).replace("\\-", "-").replace("\\e", "\\")


def test_man_page_names_every_command_leaf_and_option() -> None:
    text = _plain(_man())
    nodes = [n for n in walk(tree(build_parser())) if n.path]
    assert len(nodes) > 30  # the walk really reached the leaves
    for node in nodes:
        assert f'.SS "midbox {" ".join(node.path)}"' in text, node.path
        for action in node.parser._actions:
            if action.help == argparse.SUPPRESS:
                continue
            for opt in action.option_strings:
                assert re.search(rf"(?<![\w-]){re.escape(opt)}(?![\w-])", text), (node.path, opt)
    for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "COMMANDS", "EXIT STATUS", "FILES", "SEE ALSO"):
        assert f"\n.SH {section}\n" in text
    exit_codes = text.split(".SH EXIT STATUS")[1].split(".SH ")[0]
    assert re.findall(r"\.TP\n(\d)\n", exit_codes) == ["0", "1", "2", "3"]
    assert "operations.md" in text.split(".SH SEE ALSO")[1]


def test_man_page_has_no_stray_requests() -> None:
    for line in _man().splitlines():
        if line.startswith((".", "'")):
            assert re.match(r"\.(\\\"|TH|SH|SS|TP|PP) ?", line), line


@pytest.mark.skipif(shutil.which("groff") is None, reason="groff is not installed (structure checked above)")
def test_man_page_renders_without_warnings(tmp_path: Path) -> None:
    page = tmp_path / "midbox.1"
    page.write_text(_man())
    done = subprocess.run(
        ["groff", "-man", "-Tascii", "-ww", "-P-cbou", str(page)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert "midbox creds add" in done.stdout and "EXIT STATUS" in done.stdout


def _complete(tmp_path: Path, *words: str) -> list[str]:
    script = tmp_path / "midbox.bash-completion"
    script.write_text(render_bash(build_parser()))
    quoted = " ".join(f"'{w}'" for w in words)
    program = (
        f'source "{script}"\n'
        f"COMP_WORDS=({quoted}); COMP_CWORD={len(words) - 1}\n"
        "_midbox\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    done = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", program],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert done.stderr == ""
    return [w for w in done.stdout.splitlines() if w]


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_completion_in_a_real_bash(tmp_path: Path) -> None:
    assert _complete(tmp_path, "midbox", "cre") == ["creds"]
    assert _complete(tmp_path, "midbox", "creds", "a") == ["add"]
    assert _complete(tmp_path, "midbox", "creds", "add", "x", "--t") == ["--type"]
    assert "ssh-key" in _complete(tmp_path, "midbox", "creds", "add", "x", "--type", "")
    assert _complete(tmp_path, "midbox", "trust", "s") == ["show", "sign-root"]
    # options of another leaf are not offered; the common ones are
    assert "--type" not in _complete(tmp_path, "midbox", "creds", "list", "--")
    assert "--state-dir" in _complete(tmp_path, "midbox", "creds", "list", "--")
    # an operand is a file name: nothing from the script, bash's default takes over
    assert _complete(tmp_path, "midbox", "config", "sign", "") == []


def test_completion_refuses_unsafe_words() -> None:
    parser = argparse.ArgumentParser(prog="midbox")
    sub = parser.add_subparsers()
    sub.add_parser("x; rm -rf /")
    with pytest.raises(ValueError, match="cannot go into the completion script"):
        render_bash(parser)
