"""Fixtures every test may use, and the rule that CI's test run skips nothing.

With ``MIDBOX_REQUIRE_ALL=1`` (set by ``.ci/run``) a test that skips - a missing tool, privilege or
built binary - is reported as a failure naming its skip reason, so a machine that lacks something
cannot turn a security test into a silent skip. Without it, skips are listed by ``-ra`` as usual.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from pathlib import Path

import pytest

from tests.helpers import Pki, make_pki

# Fixtures shared across folders (a test module never imports another test module).
pytest_plugins = ("tests.support.doctor",)


@pytest.fixture(scope="session")
def dev_pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    d = tmp_path / "state"
    d.mkdir(mode=0o700)
    return d


REQUIRE_ALL = "MIDBOX_REQUIRE_ALL"


def _skip_reason(report: pytest.CollectReport | pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


# Set by .ci/run for its first test run: the tests marked built_binary run again once the binary is built,
# with their binary named, so their skip in the first run is expected, not silent.
BINARY_LATER = "MIDBOX_BINARY_TESTS_LATER"


def _refuse_skip(report: pytest.CollectReport | pytest.TestReport, item: pytest.Item | None = None) -> None:
    if item is not None and item.get_closest_marker("built_binary") and os.environ.get(BINARY_LATER) == "1":
        return
    if report.skipped and not hasattr(report, "wasxfail") and os.environ.get(REQUIRE_ALL) == "1":
        reason = _skip_reason(report)
        report.outcome = "failed"
        report.longrepr = (
            f"{REQUIRE_ALL}=1 and this test skipped: {reason}\n"
            "Install what it needs in .ci/setup (or give it the binary it names) so it runs."
        )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, None, None]:
    outcome = yield
    _refuse_skip(outcome.get_result(), item)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Generator[None, None, None]:
    outcome = yield
    _refuse_skip(outcome.get_result())
