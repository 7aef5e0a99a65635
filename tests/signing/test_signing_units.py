"""Keys, step order, and a Hypothesis fuzz of the envelope parser."""

from __future__ import annotations

import contextlib
import datetime as dt
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hardening.signing.envelope import (
    UnverifiedEnvelope,
    parse_envelope,
    serialize_envelope,
    sign_config_bytes,
)
from hardening.signing.errors import EnvelopeError, KeyFileError, SignatureError, SigningError, StepOrderError
from hardening.signing.keys import (
    generate,
    key_id,
    load_private_key,
    load_public_pem,
    private_key_file,
    public_pem,
)
from hardening.signing.trust import Signature, TrustRoot, trusted_key
from hardening.signing.verify import ConfigSignatureCheck
from tests.signing.helpers import EXPIRES, NOT_BEFORE, NOW, config_toml


def test_encrypted_key_round_trip_and_wrong_passphrase() -> None:
    key = generate()
    blob = private_key_file(key, b"correct horse", scrypt_n=2**14)
    assert b"seed" not in blob
    assert key_id(load_private_key(blob, b"correct horse").public_key()) == key_id(key.public_key())
    with pytest.raises(KeyFileError, match="wrong passphrase"):
        load_private_key(blob, b"wrong")
    with pytest.raises(KeyFileError, match="is encrypted"):
        load_private_key(blob, None)
    doc = json.loads(blob)
    doc["key_id"] = key_id(generate().public_key())  # the key id is authenticated with the seed
    with pytest.raises(KeyFileError, match="wrong passphrase, or the key file was altered"):
        load_private_key(json.dumps(doc).encode(), b"correct horse")


def test_public_key_pem_and_key_id() -> None:
    key = generate()
    pub = load_public_pem(public_pem(key.public_key()))
    assert key_id(pub) == key_id(key.public_key()) and len(key_id(pub)) == 32
    with pytest.raises(KeyFileError, match="not a PEM public key"):
        load_public_pem(b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")


def _check() -> ConfigSignatureCheck:
    root = TrustRoot(1, 1, (trusted_key(generate().public_key(), "a"),))
    return ConfigSignatureCheck(trust=root, state=None, now=NOW, expected_name=None, max_config_bytes=1000)


def test_steps_out_of_order_raise() -> None:
    c = _check()
    with pytest.raises(StepOrderError, match=r"step 2 \(envelope\) called after step 0"):
        c.step2_envelope()
    with pytest.raises(StepOrderError, match="result"):
        c.result()
    c.step1_size(b"x", b"{}")
    with pytest.raises(StepOrderError, match=r"step 4 \(threshold\) called after step 1"):
        c.step4_threshold()
    with pytest.raises(StepOrderError):
        c.step1_size(b"x", b"{}")  # no step runs twice


def test_cosigning_other_bytes_is_refused() -> None:
    a, b = generate(), generate()
    env = sign_config_bytes(
        config_toml(), a, appliance="edge-01", version=7, expires=EXPIRES, not_before=NOT_BEFORE
    )
    with pytest.raises(SigningError, match=r"the existing \.sig is for other bytes"):
        sign_config_bytes(
            config_toml(extra="#x\n"),
            b,
            appliance="edge-01",
            version=7,
            expires=EXPIRES,
            not_before=NOT_BEFORE,
            existing=env,
        )
    both = parse_envelope(
        sign_config_bytes(
            config_toml(),
            b,
            appliance="edge-01",
            version=7,
            expires=EXPIRES,
            not_before=NOT_BEFORE,
            existing=env,
        )
    )
    assert {s.key_id for s in both.signatures} == {key_id(a.public_key()), key_id(b.public_key())}


FUZZ_KEY = generate()
FUZZ_ROOT = TrustRoot(1, 1, (trusted_key(FUZZ_KEY.public_key(), "a"),))
VALID = sign_config_bytes(
    config_toml(), FUZZ_KEY, appliance="edge-01", version=7, expires=EXPIRES, not_before=NOT_BEFORE
)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_fuzz_arbitrary_bytes_only_raise_envelope_error(data: bytes) -> None:
    with contextlib.suppress(EnvelopeError):
        parse_envelope(data)


@settings(max_examples=400, deadline=None)
@given(st.integers(min_value=0, max_value=len(VALID) - 1), st.integers(min_value=1, max_value=255))
def test_fuzz_single_byte_mutation_is_refused_or_harmless(pos: int, xor: int) -> None:
    mutated = bytearray(VALID)
    mutated[pos] ^= xor
    check = ConfigSignatureCheck(
        trust=FUZZ_ROOT, state=None, now=NOW, expected_name=None, max_config_bytes=100_000
    )
    # No single changed byte of a signed envelope may pass the signature steps.
    with pytest.raises((EnvelopeError, SignatureError)):
        check.run_all(config_toml(), bytes(mutated))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(
            ["format", "appliance", "version", "expires", "not_before", "sha256", "signatures", "x"]
        ),
        json_values,
        max_size=8,
    )
)
def test_fuzz_structured_objects_only_raise_envelope_error(doc: dict[str, object]) -> None:
    with contextlib.suppress(EnvelopeError):
        parse_envelope(json.dumps(doc).encode())


@settings(max_examples=100, deadline=None)
@given(
    st.integers(min_value=1, max_value=2**40),
    st.from_regex(r"\A[a-z][a-z0-9-]{0,20}\Z"),
    st.lists(st.binary(min_size=64, max_size=64), max_size=3),
)
def test_fuzz_round_trip(version: int, name: str, sigs: list[bytes]) -> None:
    from hardening.signing.envelope import Statement

    stmt = Statement(name, version, EXPIRES, NOT_BEFORE, "ab" * 32)
    env = UnverifiedEnvelope(stmt, tuple(Signature(f"{i:032x}", s) for i, s in enumerate(sigs)))
    assert parse_envelope(serialize_envelope(env)) == env


def test_timezone_required() -> None:
    with pytest.raises(ValueError, match="timezone"):
        ConfigSignatureCheck(
            trust=FUZZ_ROOT, state=None, now=dt.datetime(2027, 1, 1), expected_name=None, max_config_bytes=1
        )
