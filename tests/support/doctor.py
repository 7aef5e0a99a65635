"""``midbox doctor`` in-process, a signed config for it, and the ``signed`` fixture (registered in tests/conftest.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from appliance.config.pinning import pin_files
from tests.helpers import Pki
from tests.signing.helpers import install_trust, write_signed_config
from tests.support.cli import run_cli
from tests.support.running import EXPIRES, NOT_BEFORE, config_bytes


def doctor(*args: str) -> tuple[int, dict[str, dict[str, str]]]:
    code, out, _ = run_cli("doctor", "--json", *args)
    findings = [json.loads(line) for line in out.splitlines()]
    return code, {f["check"]: f for f in findings}


@pytest.fixture
def signed(tmp_path: Path, state_dir: Path, dev_pki: Pki) -> tuple[Path, Ed25519PrivateKey]:
    key = Ed25519PrivateKey.generate()
    install_trust(state_dir, [key])
    return tmp_path / "admin", key


def signed_config(signed: tuple[Path, Ed25519PrivateKey], url: str, p: Pki) -> Path:
    """Signed as 'midbox config sign' does: with the SHA-256 pins of the files it names."""
    admin, key = signed
    data = pin_files(config_bytes(url, p, 1, "443"), admin / "midbox.toml").data
    return write_signed_config(admin, [key], data, version=1, expires=EXPIRES, not_before=NOT_BEFORE)
