"""A verified ``Config`` is made only by verification: not by hand, not by deriving one from another."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from appliance.config import Config, parse_config
from tests.signing.helpers import config_toml
from tests.support.signed import signed_config


def test_a_config_cannot_be_written_by_hand(tmp_path: Path) -> None:
    parsed = parse_config(config_toml(), tmp_path / "midbox.toml")
    with pytest.raises(TypeError, match="only by verifying a signed config"):
        Config(parsed, "0" * 64, ("admin",))
    with pytest.raises(TypeError, match="only by verifying a signed config"):
        Config(parsed, "0" * 64, ("admin",), receipt=object())  # type: ignore[arg-type]


def test_a_verified_config_cannot_be_bent_into_another(tmp_path: Path) -> None:
    good = signed_config(config_toml(), tmp_path / "midbox.toml")
    other = parse_config(config_toml(version=99), tmp_path / "midbox.toml")
    for change in ({"settings": other}, {"sha256": "0" * 64}, {"signers": ("mallory",)}):
        with pytest.raises(TypeError, match="only by verifying a signed config"):
            dataclasses.replace(good, **change)  # type: ignore[arg-type]
    # The receipt vouches for the settings object itself, not for an equal copy.
    twin = dataclasses.replace(good.settings)
    with pytest.raises(TypeError):
        dataclasses.replace(good, settings=twin)
    assert dataclasses.replace(good) == good  # the same facts, the same receipt: still that config


def test_the_verifier_makes_one(tmp_path: Path) -> None:
    cfg = signed_config(config_toml(version=12), tmp_path / "midbox.toml", signer="alice")
    assert cfg.version == 12 and len(cfg.signers) == 1 and len(cfg.sha256) == 64
