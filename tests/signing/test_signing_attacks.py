"""Each attack on the signed config must fail, and with its own message."""

from __future__ import annotations

import base64
import datetime as dt
import json
from pathlib import Path

import pytest

from appliance.config.model import Config
from appliance.config.verify import load_verified_config
from hardening.signing.errors import (
    BindingError,
    EnvelopeError,
    RollbackError,
    SignatureError,
    TrustRootError,
    ValidityError,
)
from hardening.signing.keys import generate
from hardening.signing.rollback import STATE_FILE, TRUST_FILE, read_state, rotate_root
from hardening.signing.trust import TrustRoot, propose, serialize, sign_root, trusted_key
from tests.signing.helpers import (
    EXPIRES,
    NOW,
    config_toml,
    install_trust,
    make_signed_setup,
    write_signed_config,
)


def verify(config: Path, state: Path, now: dt.datetime = NOW, **kw: object) -> Config:
    return load_verified_config(config, state, now, **kw)  # type: ignore[arg-type]


def test_happy_path_sign_on_workstation_verify_on_appliance(tmp_path: Path) -> None:
    s = make_signed_setup(tmp_path)
    assert s.workstation != s.state_dir
    appliance_copy = tmp_path / "appliance-etc"
    appliance_copy.mkdir()
    for f in (s.config, s.config.with_name(s.config.name + ".sig")):
        (appliance_copy / f.name).write_bytes(f.read_bytes())
    cfg = verify(appliance_copy / s.config.name, s.state_dir, commit=False)
    assert cfg.version == 7 and cfg.appliance.name == "edge-01" and len(cfg.signers) == 1
    assert read_state(s.state_dir).config_version == 0  # type: ignore[union-attr]  # verify-only never commits
    verify(appliance_copy / s.config.name, s.state_dir)
    state = read_state(s.state_dir)
    assert state is not None
    assert (state.config_version, state.config_sha256, state.appliance_name) == (7, cfg.sha256, "edge-01")
    verify(appliance_copy / s.config.name, s.state_dir)  # the same config again is fine


def test_unsigned(tmp_path: Path) -> None:
    s = make_signed_setup(tmp_path)
    s.config.with_name(s.config.name + ".sig").unlink()
    with pytest.raises(SignatureError, match=r"config is unsigned \(no \.sig file"):
        verify(s.config, s.state_dir)


def test_flipped_byte_in_config(tmp_path: Path) -> None:
    s = make_signed_setup(tmp_path)
    data = bytearray(s.config.read_bytes())
    data[data.index(b"22")] ^= 0x01  # port 22 -> 32
    s.config.write_bytes(bytes(data))
    with pytest.raises(BindingError, match="do not match the signed SHA-256"):
        verify(s.config, s.state_dir)


def test_flipped_byte_in_signature(tmp_path: Path) -> None:
    s = make_signed_setup(tmp_path)
    sig_path = s.config.with_name(s.config.name + ".sig")
    doc = json.loads(sig_path.read_bytes())
    raw = bytearray(base64.b64decode(doc["signatures"][0]["sig"]))
    raw[10] ^= 0x01
    doc["signatures"][0]["sig"] = base64.b64encode(bytes(raw)).decode()
    sig_path.write_text(json.dumps(doc))
    with pytest.raises(SignatureError, match="does not verify"):
        verify(s.config, s.state_dir)


def test_flipped_byte_in_signed_statement(tmp_path: Path) -> None:
    s = make_signed_setup(tmp_path)
    sig_path = s.config.with_name(s.config.name + ".sig")
    sig_path.write_bytes(sig_path.read_bytes().replace(b'"expires":"2027-06-01', b'"expires":"2028-06-01'))
    with pytest.raises(SignatureError, match="does not verify"):
        verify(s.config, s.state_dir)


def test_signed_by_unknown_key(tmp_path: Path) -> None:
    s = make_signed_setup(tmp_path)
    write_signed_config(s.workstation, [generate()])
    with pytest.raises(SignatureError, match="signed only by unknown key"):
        verify(s.config, s.state_dir)


def test_signed_by_key_removed_from_trust_root(tmp_path: Path) -> None:
    s = make_signed_setup(tmp_path, admins=2)
    old, keep = s.keys
    current = TrustRoot(1, 1, tuple(trusted_key(k.public_key(), f"admin{i}") for i, k in enumerate(s.keys)))
    new = propose(current, [trusted_key(keep.public_key(), "admin1")], 1)
    rotate_root(s.state_dir, sign_root(serialize(new), keep))
    write_signed_config(s.workstation, [old])
    with pytest.raises(SignatureError, match="which was removed from the trust root"):
        verify(s.config, s.state_dir)
    write_signed_config(s.workstation, [keep])
    assert verify(s.config, s.state_dir).version == 7


def test_below_threshold(tmp_path: Path) -> None:
    s = make_signed_setup(tmp_path, admins=3, threshold=2)
    write_signed_config(s.workstation, s.keys[:1])
    expected = r"1 valid signature\(s\) from trusted keys; the trust root needs 2"
    with pytest.raises(SignatureError, match=expected):
        verify(s.config, s.state_dir)
    write_signed_config(s.workstation, [s.keys[0], s.keys[2]])
    assert len(verify(s.config, s.state_dir).signers) == 2


def test_same_key_twice_counts_once(tmp_path: Path) -> None:
    s = make_signed_setup(tmp_path, admins=2, threshold=2)
    write_signed_config(s.workstation, [s.keys[0], s.keys[0]])  # co-signing with the same key replaces
    with pytest.raises(SignatureError, match="needs 2"):
        verify(s.config, s.state_dir)
    sig_path = s.config.with_name(s.config.name + ".sig")
    doc = json.loads(sig_path.read_bytes())
    doc["signatures"] = doc["signatures"] * 2
    sig_path.write_text(json.dumps(doc))
    with pytest.raises(EnvelopeError, match="the same key signs twice"):
        verify(s.config, s.state_dir)


def test_expired(tmp_path: Path) -> None:
    s = make_signed_setup(tmp_path)
    with pytest.raises(ValidityError, match="config expired at 2027-06-01T00:00:00Z"):
        verify(s.config, s.state_dir, EXPIRES + dt.timedelta(minutes=6))
    verify(s.config, s.state_dir, EXPIRES + dt.timedelta(minutes=4), commit=False)  # within the skew


def test_not_yet_valid(tmp_path: Path) -> None:
    s = make_signed_setup(tmp_path)
    with pytest.raises(ValidityError, match="not yet valid"):
        verify(s.config, s.state_dir, dt.datetime(2026, 12, 31, 23, 0, tzinfo=dt.UTC))


def test_for_another_appliance(tmp_path: Path) -> None:
    s = make_signed_setup(tmp_path)
    with pytest.raises(BindingError, match="signed for appliance 'edge-01', but this is 'edge-02'"):
        verify(s.config, s.state_dir, expected_name="edge-02")
    verify(s.config, s.state_dir)  # pins edge-01 on first acceptance
    write_signed_config(s.workstation, s.keys, name="edge-02", version=8)
    with pytest.raises(BindingError, match="but this is 'edge-01'"):
        verify(s.config, s.state_dir)


def test_older_version_than_accepted(tmp_path: Path) -> None:
    s = make_signed_setup(tmp_path)
    verify(s.config, s.state_dir)
    write_signed_config(s.workstation, s.keys, version=6)
    with pytest.raises(RollbackError, match="older than version 7 already accepted"):
        verify(s.config, s.state_dir)


def test_same_version_different_bytes(tmp_path: Path) -> None:
    s = make_signed_setup(tmp_path)
    verify(s.config, s.state_dir)
    write_signed_config(s.workstation, s.keys, config_toml(extra="# changed\n"))
    with pytest.raises(RollbackError, match="already accepted with different content"):
        verify(s.config, s.state_dir)


def test_verify_only_does_not_move_the_counter(tmp_path: Path) -> None:
    s = make_signed_setup(tmp_path)
    write_signed_config(s.workstation, s.keys, version=9)
    verify(s.config, s.state_dir, commit=False)
    write_signed_config(s.workstation, s.keys, version=8)
    assert verify(s.config, s.state_dir).version == 8


def test_toml_disagrees_with_signed_statement(tmp_path: Path) -> None:
    s = make_signed_setup(tmp_path)
    # Admin tooling would refuse this; an attacker-made pairing must still fail after the signature checks.
    write_signed_config(s.workstation, s.keys, config_toml(version=7), version=8)
    with pytest.raises(BindingError, match="config says version 7, its signature 8"):
        verify(s.config, s.state_dir)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda b: b.replace(b'"version":7', b'"version":7,"version":9'), "duplicate field 'version'"),
        (lambda b: b.replace(b'"sig":"', b'"sig":"!'), "bad base64"),
        (lambda b: b.rstrip(b"\n") + b"{}", "trailing data"),
        (lambda b: b.replace(b'"version":7', b'"version":7,"extra":1'), "unknown field 'extra'"),
        (lambda b: b.replace(b'"version":7', b'"version":true'), "field 'version' must be int"),
        (lambda b: b"\xff" + b, "not ASCII"),
        (lambda b: b + b" " * 20_000, "more than 16000"),
    ],
)
def test_malformed_envelope(tmp_path: Path, mutate: object, message: str) -> None:
    s = make_signed_setup(tmp_path)
    sig_path = s.config.with_name(s.config.name + ".sig")
    sig_path.write_bytes(mutate(sig_path.read_bytes()))  # type: ignore[operator]
    with pytest.raises(EnvelopeError, match=message):
        verify(s.config, s.state_dir)


def test_oversized_config(tmp_path: Path) -> None:
    s = make_signed_setup(tmp_path)
    s.config.write_bytes(config_toml() + b"#" * 1_000_001)
    with pytest.raises(EnvelopeError, match="more than the 1000000 allowed"):
        verify(s.config, s.state_dir)


def test_rotation_signed_by_too_few_old_keys(tmp_path: Path) -> None:
    s = make_signed_setup(tmp_path, admins=3, threshold=2)
    current = TrustRoot(1, 2, tuple(trusted_key(k.public_key(), f"admin{i}") for i, k in enumerate(s.keys)))
    attacker = generate()
    new = propose(current, [trusted_key(attacker.public_key(), "mallory")], 1)
    once = sign_root(sign_root(serialize(new), s.keys[0]), attacker)
    with pytest.raises(TrustRootError, match=r"1 valid signature\(s\) from current keys.*needs 2"):
        rotate_root(s.state_dir, once)
    assert verify(s.config, s.state_dir, commit=False)  # still the old root
    twice = sign_root(once, s.keys[1])
    rotate_root(s.state_dir, twice)
    with pytest.raises(SignatureError, match="removed from the trust root"):
        verify(s.config, s.state_dir)


def test_rotation_to_an_older_version_is_refused(tmp_path: Path) -> None:
    s = make_signed_setup(tmp_path)
    current = TrustRoot(1, 1, (trusted_key(s.keys[0].public_key(), "admin0"),))
    stale = TrustRoot(1, 1, (trusted_key(generate().public_key(), "x"),))
    with pytest.raises(TrustRootError, match="not newer than the installed 1"):
        rotate_root(s.state_dir, sign_root(serialize(stale), s.keys[0]))
    assert current.version == 1


def test_trust_root_replaced_on_disk(tmp_path: Path) -> None:
    s = make_signed_setup(tmp_path)
    attacker = generate()
    evil = TrustRoot(1, 1, (trusted_key(attacker.public_key(), "admin0"),))
    (s.state_dir / TRUST_FILE).write_bytes(serialize(evil))
    write_signed_config(s.workstation, [attacker], version=99)
    with pytest.raises(TrustRootError, match="replaced without a rotation signed by the old keys"):
        verify(s.config, s.state_dir)


def test_pin_removed_with_the_trust_root_in_place(tmp_path: Path) -> None:
    s = make_signed_setup(tmp_path)
    (s.state_dir / STATE_FILE).unlink()
    with pytest.raises(TrustRootError, match="pin and rollback counter were removed"):
        verify(s.config, s.state_dir)


def test_a_symlinked_rollback_counter_is_refused(tmp_path: Path) -> None:
    """Issue 13 item 10: a link to a file elsewhere (one someone else may write) is not the counter."""
    s = make_signed_setup(tmp_path)
    verify(s.config, s.state_dir)  # version 7 accepted: the counter says so
    elsewhere = tmp_path / "writable-by-others.json"
    (s.state_dir / STATE_FILE).rename(elsewhere)
    (s.state_dir / STATE_FILE).symlink_to(elsewhere)
    with pytest.raises(TrustRootError, match="symlink is refused"):
        verify(s.config, s.state_dir)
    with pytest.raises(TrustRootError, match="symlink is refused"):
        read_state(s.state_dir)


def test_no_trust_root(tmp_path: Path) -> None:
    s = make_signed_setup(tmp_path)
    with pytest.raises(TrustRootError, match="no trust root installed"):
        verify(s.config, tmp_path / "empty")


def test_trust_init_refuses_to_overwrite(tmp_path: Path) -> None:
    s = make_signed_setup(tmp_path)
    (s.state_dir / TRUST_FILE).unlink()
    with pytest.raises(TrustRootError, match="already installed"):
        install_trust(s.state_dir, [generate()])


def test_name_pinned_at_enrollment(tmp_path: Path) -> None:
    key = generate()
    install_trust(tmp_path / "state", [key], appliance_name="edge-02")
    config = write_signed_config(tmp_path / "ws", [key])
    with pytest.raises(BindingError, match="signed for appliance 'edge-01', but this is 'edge-02'"):
        verify(config, tmp_path / "state")


def test_rotation_interrupted_after_the_pin_moved_is_completed(tmp_path: Path) -> None:
    from dataclasses import replace

    from hardening.signing.rollback import NEXT_TRUST_FILE, write_state

    s = make_signed_setup(tmp_path)
    current = TrustRoot(1, 1, (trusted_key(s.keys[0].public_key(), "admin0"),))
    new_key = generate()
    new = propose(current, [trusted_key(new_key.public_key(), "admin1")], 1)
    signed = sign_root(serialize(new), s.keys[0])
    # Simulate the crash: staged file and pin written, trust.json still the old one.
    (s.state_dir / NEXT_TRUST_FILE).write_bytes(signed)
    state = read_state(s.state_dir)
    assert state is not None
    write_state(s.state_dir, replace(state, trust_version=2, trust_sha256=new.sha256))
    write_signed_config(s.workstation, [new_key])
    assert verify(s.config, s.state_dir).version == 7
    assert not (s.state_dir / NEXT_TRUST_FILE).exists()


def test_staged_root_not_matching_the_pin_is_ignored(tmp_path: Path) -> None:
    from hardening.signing.rollback import NEXT_TRUST_FILE

    s = make_signed_setup(tmp_path)
    attacker = generate()
    mallory = (trusted_key(attacker.public_key(), "m"),)
    (s.state_dir / NEXT_TRUST_FILE).write_bytes(serialize(TrustRoot(2, 1, mallory)))
    (s.state_dir / TRUST_FILE).write_bytes(serialize(TrustRoot(1, 1, mallory)))
    with pytest.raises(TrustRootError, match="replaced without a rotation"):
        verify(s.config, s.state_dir)
