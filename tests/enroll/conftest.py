from __future__ import annotations

from pathlib import Path

import pytest

from tests.enroll.helpers import CA, NAME, make_ca
from tests.support.cli import Result, run_cli


@pytest.fixture(scope="session")
def client_ca() -> CA:
    return make_ca()


@pytest.fixture
def etc(tmp_path: Path) -> Path:
    return tmp_path / "etc"


@pytest.fixture
def enrolled(monkeypatch: pytest.MonkeyPatch, etc: Path, state_dir: Path) -> Result:
    """``midbox enroll --name edge-01 --out ETC`` has run: ETC/appliance.key and ETC/appliance.csr."""
    r = run_cli("enroll", "--name", NAME, "--out", str(etc), "--state-dir", str(state_dir))
    assert r.code == 0, r.err
    return r
