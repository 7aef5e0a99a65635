"""Topic midbox.config through the real dispatcher, real verification and real files: what an
attacker controlling the instance can deliver (replays, other appliances' configs, tampered or
unsigned files, hostile payloads) is refused with nothing on disk changed; what admins signed is
written beside the running config and verifies as the file the reload then reads."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.config import delivered
from appliance.config.model import Config
from appliance.config.verify import load_verified_config, try_reload
from appliance.config_push import TOPIC, ConfigPushProbe, PushTarget, decode_push
from appliance.dispatch import Dispatcher, Outcome
from appliance.errors import PayloadError
from appliance.limits import MAX_CONFIG_PUSH_PAYLOAD_BYTES, Limits
from appliance.probes.base import Job, MemoryAudit, ProbeContext
from appliance.queue.records import OutputRecord
from devinstance.configpush import push_payload
from hardening.policy import Policy
from hardening.signing.envelope import (
    UnverifiedEnvelope,
    parse_envelope,
    serialize_envelope,
    sign_config_bytes,
)
from hardening.signing.keys import generate
from tests.signing.helpers import EXPIRES, NOT_BEFORE, NOW, config_toml, install_trust
from tests.support.fakes import NoCredentials

FLEET = ("edge-a", "edge-b")


def fleet_toml(names: Sequence[str], version: int, expires: dt.datetime = EXPIRES) -> bytes:
    listed = ", ".join(f'"{n}"' for n in names)
    return config_toml("x", version, expires).replace(b'name = "x"', f"names = [{listed}]".encode())


def signed(
    data: bytes,
    keys: Sequence[Ed25519PrivateKey],
    names: str | tuple[str, ...],
    version: int,
    expires: dt.datetime = EXPIRES,
) -> bytes:
    envelope: bytes | None = None
    for key in keys:
        envelope = sign_config_bytes(
            data,
            key,
            appliance=names,
            version=version,
            expires=expires,
            not_before=NOT_BEFORE,
            existing=envelope,
        )
    assert envelope is not None
    return envelope


@dataclass
class Appliance:
    """One appliance's config directory and state dir, running ``current``."""

    config_path: Path
    state_dir: Path
    current: Config
    audit: MemoryAudit = field(default_factory=MemoryAudit)
    applied: list[bool] = field(default_factory=list)

    def push(self, payload: str) -> Outcome:
        target = PushTarget(self.config_path, self.state_dir, lambda: self.applied.append(True), lambda: NOW)
        ctx = ProbeContext(Policy([]), NoCredentials(), self.audit, Limits(), self.state_dir)
        dispatcher = Dispatcher({TOPIC: ConfigPushProbe(self.current, target)}, ctx)
        record = OutputRecord(
            sys_id="c" * 32,
            agent=f"mid.server.{self.current.appliance.name}",
            topic=TOPIC,
            name="midbox.toml",
            source="",
            payload=payload,
            state="processing",
            agent_correlator="",
            priority="1",
            sys_created_on="2027-01-15 12:00:00",
        )
        return asyncio.run(dispatcher.handle(record))

    def files(self) -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in sorted(self.config_path.parent.iterdir())}

    def events(self, name: str) -> list[dict[str, object]]:
        return [fields for event, fields in self.audit.events if event == name]


def appliance(base: Path, keys: Sequence[Ed25519PrivateKey], name: str, threshold: int = 1) -> Appliance:
    """Running a single-name config, version 7, with its name pinned at 'trust init --name'."""
    etc = base / name / "etc"
    etc.mkdir(parents=True)
    data = config_toml(name, 7)
    path = etc / "midbox.toml"
    path.write_bytes(data)
    delivered.signature_of(path).write_bytes(signed(data, keys[:threshold], name, 7))
    state = base / name / "state"
    install_trust(state, keys, threshold, appliance_name=name)
    return Appliance(path, state, load_verified_config(path, state, NOW))


@pytest.fixture
def keys() -> tuple[Ed25519PrivateKey, ...]:
    return (generate(), generate())


def test_a_signed_config_is_written_beside_the_running_one_and_verifies_as_that_file(
    tmp_path: Path, keys: tuple[Ed25519PrivateKey, ...]
) -> None:
    app = appliance(tmp_path, keys, "edge-01")
    before = app.files()
    new = config_toml("edge-01", 8)
    outcome = app.push(push_payload(new, signed(new, keys[:1], "edge-01", 8)))

    assert outcome.error is None, outcome.error
    assert 'verdict="accepted"' in outcome.payload and "<config_version>8</config_version>" in outcome.payload
    assert hashlib.sha256(new).hexdigest() in outcome.payload and keys_id(keys[0]) in outcome.payload
    after = app.files()
    assert after["midbox.toml"] == new
    # The pair that ran before is kept for the operator, and nothing is left staged.
    assert after["midbox.toml.prev"] == before["midbox.toml"]
    assert after["midbox.toml.prev.sig"] == before["midbox.toml.sig"]
    assert set(after) == {"midbox.toml", "midbox.toml.sig", "midbox.toml.prev", "midbox.toml.prev.sig"}
    assert app.applied == [True]
    assert app.events("config.pushed")[0]["config_version"] == 8
    assert not app.events("config.push_refused")
    # The reload the appliance then runs reads that file and puts version 8 in force.
    reload = try_reload(app.current, app.config_path, app.state_dir, NOW, app.audit)
    assert reload.changed and reload.config.version == 8

    # Delivered again (at-least-once): nothing to do, nothing written, no reload.
    app.current = reload.config
    again = app.push(push_payload(new, signed(new, keys[:1], "edge-01", 8)))
    assert again.error is None and 'verdict="unchanged"' in again.payload
    assert app.files() == after and app.applied == [True]


def keys_id(key: Ed25519PrivateKey) -> str:
    from hardening.signing.keys import key_id

    return key_id(key.public_key())


def _unsigned(data: bytes, name: str, version: int) -> bytes:
    statement = parse_envelope(signed(data, [generate()], name, version)).statement
    return serialize_envelope(UnverifiedEnvelope(statement, ()))


def _pair(
    data: bytes,
    keys: Sequence[Ed25519PrivateKey],
    names: str | tuple[str, ...],
    version: int,
    expires: dt.datetime = EXPIRES,
) -> tuple[bytes, bytes]:
    return data, signed(data, keys, names, version, expires)


def refusal(case: str, k: Sequence[Ed25519PrivateKey]) -> tuple[bytes, bytes]:
    """What the instance delivers in each case (``k`` are the trusted admin keys)."""
    v8, past = config_toml("edge-01", 8), NOW - dt.timedelta(days=1)
    if case == "unsigned":
        return v8, _unsigned(v8, "edge-01", 8)
    if case == "unknown key":
        return _pair(v8, [generate()], "edge-01", 8)
    if case == "rolled back":
        return _pair(config_toml("edge-01", 6), k[:1], "edge-01", 6)
    if case == "same version, other bytes":
        return _pair(config_toml("edge-01", 7, extra="# edited\n"), k[:1], "edge-01", 7)
    if case == "other appliance":
        return _pair(config_toml("edge-02", 8), k[:1], "edge-02", 8)
    if case == "fleet without this one":
        return _pair(fleet_toml(FLEET, 8), k[:1], FLEET, 8)
    if case == "expired":
        return _pair(config_toml("edge-01", 8, past), k[:1], "edge-01", 8, past)
    assert case == "changed after signing"
    return v8.replace(b"127.0.0.0/8", b"0.0.0.0/0"), signed(v8, k[:1], "edge-01", 8)


# case -> a phrase of the refusal, which names the fix
REFUSALS = {
    "unsigned": "unsigned",
    "unknown key": "unknown key",
    "rolled back": "rollback refused",
    "same version, other bytes": "raise 'version'",
    "other appliance": "but this is 'edge-01'",
    "fleet without this one": "add it to [appliance] names",
    "expired": "expired",
    "changed after signing": "changed after signing",
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_what_admins_did_not_sign_for_this_appliance_changes_nothing_and_is_audited(
    tmp_path: Path, keys: tuple[Ed25519PrivateKey, ...], case: str
) -> None:
    app = appliance(tmp_path, keys, "edge-01")
    before, pinned = app.files(), (app.state_dir / "config-state.json").read_bytes()
    phrase = REFUSALS[case]
    config, signature = refusal(case, keys)
    outcome = app.push(push_payload(config, signature))

    assert outcome.error is not None and phrase in outcome.error, outcome.error
    assert outcome.error.startswith("config refused, still on version 7: ")
    assert app.files() == before and app.applied == []
    assert (app.state_dir / "config-state.json").read_bytes() == pinned  # rollback counter untouched
    [refused] = app.events("config.push_refused")
    assert refused["config_sha256"] == hashlib.sha256(config).hexdigest() and refused["kept_version"] == 7
    assert not app.events("config.pushed")
    # The file on disk still verifies: the running config stays what a restart would load.
    assert load_verified_config(app.config_path, app.state_dir, NOW).version == 7


def test_two_person_rule_holds_for_delivered_configs(
    tmp_path: Path, keys: tuple[Ed25519PrivateKey, ...]
) -> None:
    app = appliance(tmp_path, keys, "edge-01", threshold=2)
    new = config_toml("edge-01", 8)
    one = app.push(push_payload(new, signed(new, keys[:1], "edge-01", 8)))
    assert one.error is not None and "co-sign" in one.error and app.applied == []
    both = app.push(push_payload(new, signed(new, keys, "edge-01", 8)))
    assert both.error is None and app.applied == [True]


B64_CONFIG = "dmVyc2lvbiA9IDgK"  # "version = 8\n"
HOSTILE = {
    "bad base64": (
        f'<parameters><parameter name="config" value="not*base64"/>'
        f'<parameter name="signature" value="{B64_CONFIG}"/></parameters>',
        "not valid base64",
    ),
    "no signature": (
        f'<parameters><parameter name="config" value="{B64_CONFIG}"/></parameters>',
        "'signature' is missing",
    ),
    "unknown parameter": (
        f'<parameters><parameter name="config" value="{B64_CONFIG}"/>'
        f'<parameter name="signature" value="{B64_CONFIG}"/>'
        '<parameter name="apply_unsigned" value="true"/></parameters>',
        "unknown parameter",
    ),
    "signature over its cap": (
        f'<parameters><parameter name="config" value="{B64_CONFIG}"/>'
        f'<parameter name="signature" value="{"A" * 21_340}"/></parameters>',
        "longer than 21336",
    ),
    "payload over its cap": (
        f'<parameters><parameter name="config" value="{"A" * MAX_CONFIG_PUSH_PAYLOAD_BYTES}"/>'
        f'<parameter name="signature" value="{B64_CONFIG}"/></parameters>',
        f"{MAX_CONFIG_PUSH_PAYLOAD_BYTES}",
    ),
    "entity expansion": (
        '<?xml version="1.0"?><!DOCTYPE p [<!ENTITY a "aaaa">]>'
        '<parameters><parameter name="config" value="&a;"/></parameters>',
        "payload",
    ),
    "not xml": ("<parameters><parameter", "payload"),
    "garbage signature": (
        f'<parameters><parameter name="config" value="{B64_CONFIG}"/>'
        f'<parameter name="signature" value="{B64_CONFIG}"/></parameters>',
        "signature file",
    ),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_payloads_get_an_error_result_and_an_audit_entry(
    tmp_path: Path, keys: tuple[Ed25519PrivateKey, ...], case: str
) -> None:
    app = appliance(tmp_path, keys, "edge-01")
    before = app.files()
    payload, phrase = HOSTILE[case]
    outcome = app.push(payload)
    assert outcome.error is not None and phrase in outcome.error, outcome.error
    assert app.files() == before and app.applied == []
    # Refused by the topic (with the SHA-256 when the config decoded) or, for a payload that is not
    # even readable XML, by the dispatcher; either way the audit log has it with the error.
    finished = app.events("probe.finished")
    assert finished and finished[-1]["result_code"] == 1 and finished[-1]["topic"] == TOPIC
    assert not app.events("config.pushed")


def test_a_fleet_config_is_taken_by_the_appliances_it_lists_and_refused_by_a_third(
    tmp_path: Path, keys: tuple[Ed25519PrivateKey, ...]
) -> None:
    fleet = fleet_toml(FLEET, 8)
    payload = push_payload(fleet, signed(fleet, keys[:1], FLEET, 8))  # one signature for the fleet
    for name in FLEET:
        app = appliance(tmp_path, keys, name)
        outcome = app.push(payload)
        assert outcome.error is None and 'verdict="accepted"' in outcome.payload, (name, outcome.error)
        reloaded = try_reload(app.current, app.config_path, app.state_dir, NOW, app.audit)
        # It runs as its own name (pinned in its state dir), and knows the fleet it belongs to.
        assert reloaded.changed and reloaded.config.appliance.name == name
        assert reloaded.config.appliance.agent == f"mid.server.{name}"
        assert reloaded.config.appliance.names == FLEET
        # A restart loads it the same way.
        assert load_verified_config(app.config_path, app.state_dir, NOW).appliance.name == name
    third = appliance(tmp_path, keys, "edge-c")
    before = third.files()
    outcome = third.push(payload)
    assert outcome.error is not None and "but not for this one, 'edge-c'" in outcome.error
    assert third.files() == before


def test_a_config_that_cannot_be_written_is_refused_with_the_fix_and_nothing_changed(
    tmp_path: Path, keys: tuple[Ed25519PrivateKey, ...]
) -> None:
    app = appliance(tmp_path, keys, "edge-01")
    before = app.files()
    # Where the staged signature goes, something that cannot be replaced by a file: the write fails
    # after the staged config was written (directory permissions would not stop root).
    blocker = delivered.signature_of(delivered.staged_path(app.config_path))
    blocker.mkdir()
    new = config_toml("edge-01", 8)
    outcome = app.push(push_payload(new, signed(new, keys[:1], "edge-01", 8)))
    assert outcome.error is not None and "let the service user write" in outcome.error, outcome.error
    blocker.rmdir()
    assert app.files() == before and app.applied == []
    assert app.events("config.push_refused")[0]["config_sha256"] == hashlib.sha256(new).hexdigest()


def test_a_swap_interrupted_between_its_two_renames_is_completed_at_start(tmp_path: Path) -> None:
    path = tmp_path / "midbox.toml"
    path.write_bytes(b"old")
    delivered.signature_of(path).write_bytes(b"new sig")  # the signature moved, then the crash
    delivered.staged_path(path).write_bytes(b"new")
    assert delivered.finish_interrupted(path)
    assert path.read_bytes() == b"new" and not delivered.staged_path(path).exists()
    # A staged pair means the swap never began: the running pair stays, the staged one goes.
    delivered.staged_path(path).write_bytes(b"newer")
    delivered.signature_of(delivered.staged_path(path)).write_bytes(b"newer sig")
    assert not delivered.finish_interrupted(path)
    assert path.read_bytes() == b"new" and sorted(p.name for p in tmp_path.iterdir()) == [
        "midbox.toml",
        "midbox.toml.sig",
    ]
    assert not delivered.finish_interrupted(path)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["config", "signature", "other", ""]), st.text(max_size=64)), max_size=4
    )
)
def test_fuzz_decode_push_returns_bytes_or_a_payload_error(params: list[tuple[str, str]]) -> None:
    job = Job(sys_id="c" * 32, topic=TOPIC, name="", source="", agent="", parameters=tuple(params))
    try:
        config, signature = decode_push(job)
    except PayloadError as e:
        assert str(e).startswith(f"{TOPIC}: ")
    else:
        assert isinstance(config, bytes) and isinstance(signature, bytes) and config and signature
