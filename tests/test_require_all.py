"""MIDBOX_REQUIRE_ALL=1 turns a skip into a failure that names the skip's reason (tests/conftest.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SKIPPING = """
import pytest

def test_needs_a_tool() -> None:
    pytest.skip("needs the frobnicator (apt-get install frobnicator)")

def test_runs() -> None:
    assert True
"""


def run_pytest(directory: Path, require: bool) -> subprocess.CompletedProcess[str]:
    (directory / "test_skipping.py").write_text(SKIPPING)
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT)}
    if require:
        env["MIDBOX_REQUIRE_ALL"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "tests.conftest", "-p", "no:cacheprovider", "-rA",
         "test_skipping.py"],
        cwd=directory, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_a_skip_is_a_skip_without_the_flag(tmp_path: Path) -> None:
    done = run_pytest(tmp_path, require=False)
    assert done.returncode == 0, done.stdout
    assert "1 passed, 1 skipped" in done.stdout


def test_a_skip_fails_with_the_flag_and_names_its_reason(tmp_path: Path) -> None:
    done = run_pytest(tmp_path, require=True)
    assert done.returncode == 1, done.stdout
    assert "1 failed, 1 passed" in done.stdout
    assert "MIDBOX_REQUIRE_ALL=1 and this test skipped: needs the frobnicator" in done.stdout


BINARY = """
import pytest

pytestmark = pytest.mark.built_binary

def test_checks_the_binary() -> None:
    pytest.skip("set MIDBOX_FROZEN_BINARY to a built binary")
"""


def test_a_built_binary_skip_is_expected_only_when_the_binary_tests_run_later(tmp_path: Path) -> None:
    (tmp_path / "test_binary.py").write_text(BINARY)
    (tmp_path / "conftest.py").write_text(
        'def pytest_configure(config):\n    config.addinivalue_line("markers", "built_binary: x")\n'
    )
    for later, code, summary in (("1", 0, "1 skipped"), ("", 1, "1 failed")):
        env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT), "MIDBOX_REQUIRE_ALL": "1"}
        env["MIDBOX_BINARY_TESTS_LATER"] = later
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "tests.conftest", "-p", "no:cacheprovider",
             "test_binary.py"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert done.returncode == code and summary in done.stdout, done.stdout
