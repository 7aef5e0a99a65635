"""[appliance] names = [...]: one signature for a fleet, each appliance checking its own name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from appliance.config.parse import parse_config
from appliance.config.verify import load_verified_config
from appliance.errors import ConfigError
from hardening.errors import HardeningError
from hardening.signing.envelope import MAX_FLEET_NAMES, parse_envelope, serialize_envelope, sign_config_bytes
from hardening.signing.errors import EnvelopeError
from hardening.signing.keys import generate
from tests.signing.helpers import EXPIRES, NOT_BEFORE, NOW, config_toml, install_trust

KEY = generate()


def fleet_toml(listed: str, version: int = 7) -> bytes:
    return config_toml("x", version).replace(b'name = "x"', listed.encode())


def write_pair(directory: Path, data: bytes, names: str | tuple[str, ...], version: int = 7) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "midbox.toml"
    path.write_bytes(data)
    envelope = sign_config_bytes(
        data, KEY, appliance=names, version=version, expires=EXPIRES, not_before=NOT_BEFORE
    )
    path.with_name("midbox.toml.sig").write_bytes(envelope)
    return path


def test_a_fleet_statement_round_trips_and_a_single_name_one_is_unchanged() -> None:
    data = fleet_toml('names = ["a", "b"]')
    fleet = sign_config_bytes(
        data, KEY, appliance=("a", "b"), version=7, expires=EXPIRES, not_before=NOT_BEFORE
    )
    doc = json.loads(fleet)
    assert doc["appliances"] == ["a", "b"] and "appliance" not in doc
    assert parse_envelope(fleet).statement.names == ("a", "b")
    assert serialize_envelope(parse_envelope(fleet)) == fleet
    # A list of one signs exactly what name = "a" signs: old files and signatures stay valid.
    one = sign_config_bytes(data, KEY, appliance=("a",), version=7, expires=EXPIRES, not_before=NOT_BEFORE)
    single = sign_config_bytes(data, KEY, appliance="a", version=7, expires=EXPIRES, not_before=NOT_BEFORE)
    assert one == single and json.loads(single)["appliance"] == "a"


@pytest.mark.parametrize(
    ("change", "phrase"),
    [
        (lambda d: {**d, "appliance": "a"}, "both 'appliance' and 'appliances'"),
        (lambda d: {**d, "appliances": ["a"]}, "two or more names"),
        (lambda d: {**d, "appliances": ["a", "a"]}, "twice"),
        (lambda d: {**d, "appliances": ["a", 5]}, "list of at most"),
        (lambda d: {**d, "appliances": [f"n{i}" for i in range(MAX_FLEET_NAMES + 1)]}, "at most"),
        (lambda d: {**d, "appliances": ["a", "b c"]}, "not valid"),
    ],
)
def test_a_malformed_fleet_envelope_is_refused(change, phrase) -> None:  # type: ignore[no-untyped-def]
    data = fleet_toml('names = ["a", "b"]')
    doc = json.loads(
        sign_config_bytes(data, KEY, appliance=("a", "b"), version=7, expires=EXPIRES, not_before=NOT_BEFORE)
    )
    with pytest.raises(EnvelopeError, match=phrase):
        parse_envelope(json.dumps(change(doc)).encode())


@pytest.mark.parametrize(
    ("listed", "phrase"),
    [
        ('name = "a"\nnames = ["a", "b"]', "both 'name' and 'names'"),
        ('names = ["a", "a"]', "lists a name twice"),
        ("names = []", "1 to"),
        ('names = ["a", "b c"]', "is not a name"),
        ('names = ["a", 3]', "is not a name"),
        ('names = "a"', "names"),
    ],
)
def test_a_malformed_names_key_is_refused_with_the_fix(listed: str, phrase: str) -> None:
    with pytest.raises(ConfigError, match=phrase):
        parse_config(fleet_toml(listed), Path("midbox.toml"))


def test_names_of_one_is_the_same_as_name() -> None:
    parsed = parse_config(fleet_toml('names = ["edge-01"]'), Path("midbox.toml"))
    assert parsed.appliance.name == "edge-01" and parsed.appliance.names == ("edge-01",)
    assert parsed.appliance.fleet == ()


def test_each_listed_appliance_runs_as_its_pinned_name_and_others_are_refused(tmp_path: Path) -> None:
    data = fleet_toml('names = ["edge-a", "edge-b"]')
    path = write_pair(tmp_path / "etc", data, ("edge-a", "edge-b"))
    for name in ("edge-a", "edge-b"):
        state = tmp_path / name
        install_trust(state, [KEY], appliance_name=name)
        config = load_verified_config(path, state, NOW)
        assert config.appliance.name == name and config.appliance.fleet == ("edge-a", "edge-b")
        assert json.loads((state / "config-state.json").read_bytes())["appliance_name"] == name
    state = tmp_path / "edge-c"
    install_trust(state, [KEY], appliance_name="edge-c")
    with pytest.raises(HardeningError, match="but not for this one, 'edge-c'; add it to"):
        load_verified_config(path, state, NOW)


def test_a_fleet_config_needs_the_appliance_name_pinned(tmp_path: Path) -> None:
    path = write_pair(tmp_path / "etc", fleet_toml('names = ["edge-a", "edge-b"]'), ("edge-a", "edge-b"))
    install_trust(tmp_path / "state", [KEY])  # 'trust init' without --name, and no config accepted yet
    with pytest.raises(HardeningError, match="trust init --name NAME"):
        load_verified_config(path, tmp_path / "state", NOW)
    # Named explicitly (as 'config verify --name' does) it verifies.
    assert (
        load_verified_config(path, tmp_path / "state", NOW, "edge-b", commit=False).appliance.name == "edge-b"
    )


def test_the_names_in_the_file_must_be_the_names_signed(tmp_path: Path) -> None:
    # Signed for a and b, but the file lists a and c: c could otherwise slip into a fleet.
    path = write_pair(tmp_path / "etc", fleet_toml('names = ["edge-a", "edge-c"]'), ("edge-a", "edge-b"))
    install_trust(tmp_path / "state", [KEY], appliance_name="edge-a")
    with pytest.raises(HardeningError, match="its signature edge-a, edge-b"):
        load_verified_config(path, tmp_path / "state", NOW)


def test_an_appliance_moves_from_its_own_config_to_a_fleet_one_keeping_its_name(tmp_path: Path) -> None:
    state = tmp_path / "state"
    install_trust(state, [KEY])  # no name pinned: the first single-name config pins it
    own = write_pair(tmp_path / "v7", config_toml("edge-b", 7), "edge-b")
    assert load_verified_config(own, state, NOW).appliance.name == "edge-b"
    fleet = write_pair(
        tmp_path / "v8", fleet_toml('names = ["edge-a", "edge-b"]', 8), ("edge-a", "edge-b"), 8
    )
    assert load_verified_config(fleet, state, NOW).appliance.name == "edge-b"


def test_midbox_config_sign_and_verify_a_fleet_config(tmp_path: Path) -> None:
    from tests.support.signing_cli import fails, ok

    ws, state = tmp_path / "ws", tmp_path / "state"
    ws.mkdir()
    example = ok("config", "example", "--name", "edge-a", cwd=ws)
    (ws / "midbox.toml").write_text(example.replace('name = "edge-a"', 'names = ["edge-a", "edge-b"]', 1))
    ok("keygen", "--out", "keys", "--name", "alice", "--no-passphrase", cwd=ws)
    assert "appliance edge-a, edge-b" in ok(
        "config", "sign", "midbox.toml", "--key", "keys/alice.key", cwd=ws
    )
    assert json.loads((ws / "midbox.toml.sig").read_text())["appliances"] == ["edge-a", "edge-b"]
    ok("trust", "init", "--pubkey", "keys/alice.pub", "--state-dir", state, cwd=ws)
    out = ok("config", "verify", "midbox.toml", "--name", "edge-b", "--state-dir", state, cwd=ws)
    assert "appliance: edge-b" in out and "fleet: edge-a, edge-b" in out
    line = fails(1, "config", "verify", "midbox.toml", "--name", "edge-c", "--state-dir", state, cwd=ws)
    assert "but not for this one, 'edge-c'" in line
