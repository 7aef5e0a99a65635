"""The exact edges of the signed-config checks: size caps, validity window, who signed, refusals.

Written against the mutants of ``hardening/signing/verify.py`` that survived the signing tests
(``python -m tests.mutation --only sigverify``): an off-by-one at a cap or at the clock-skew edge,
and the signer names reported for the audit.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hardening.signing.envelope import (
    MAX_ENVELOPE_BYTES,
    parse_envelope,
    serialize_envelope,
    sign_config_bytes,
)
from hardening.signing.errors import BindingError, EnvelopeError, SignatureError, ValidityError
from hardening.signing.keys import generate, key_id
from hardening.signing.trust import TrustRoot, trusted_key
from hardening.signing.verify import CLOCK_SKEW, ConfigSignatureCheck
from tests.signing.helpers import EXPIRES, NOT_BEFORE, NOW, config_toml

SECOND = dt.timedelta(seconds=1)
DATA = config_toml()


def sign(*keys: Ed25519PrivateKey, data: bytes = DATA) -> bytes:
    envelope: bytes | None = None
    for key in keys:
        envelope = sign_config_bytes(
            data,
            key,
            appliance="edge-01",
            version=7,
            expires=EXPIRES,
            not_before=NOT_BEFORE,
            existing=envelope,
        )
    assert envelope is not None
    return envelope


def check(
    root: TrustRoot, *, now: dt.datetime = NOW, max_config_bytes: int = 100_000
) -> ConfigSignatureCheck:
    return ConfigSignatureCheck(
        trust=root, state=None, now=now, expected_name=None, max_config_bytes=max_config_bytes
    )


KEY = generate()
ROOT = TrustRoot(1, 1, (trusted_key(KEY.public_key(), "alice"),))
ENVELOPE = sign(KEY)


def test_a_config_of_exactly_the_cap_passes_and_one_byte_more_is_refused() -> None:
    assert check(ROOT, max_config_bytes=len(DATA)).run_all(DATA, ENVELOPE).statement.version == 7
    with pytest.raises(EnvelopeError, match=f"config is {len(DATA)} bytes, more than the {len(DATA) - 1}"):
        check(ROOT, max_config_bytes=len(DATA) - 1).run_all(DATA, ENVELOPE)


def test_an_envelope_of_exactly_the_cap_passes_step1_and_one_byte_more_is_refused() -> None:
    check(ROOT).step1_size(DATA, b" " * MAX_ENVELOPE_BYTES)
    with pytest.raises(EnvelopeError, match=f"more than {MAX_ENVELOPE_BYTES}"):
        check(ROOT).step1_size(DATA, b" " * (MAX_ENVELOPE_BYTES + 1))


@pytest.mark.parametrize(
    ("now", "accepted"),
    [
        (EXPIRES + CLOCK_SKEW, True),  # the last moment the skew allows
        (EXPIRES + CLOCK_SKEW + SECOND, False),
        (NOT_BEFORE - CLOCK_SKEW, True),  # the first moment the skew allows
        (NOT_BEFORE - CLOCK_SKEW - SECOND, False),
        (NOT_BEFORE - CLOCK_SKEW / 2, True),  # a clock a little behind is forgiven
        (NOT_BEFORE, True),
    ],
    ids=["expiry-edge", "expired", "start-edge", "too-early", "within-skew", "start"],
)
def test_the_validity_window_is_inclusive_of_the_skew_and_no_wider(now: dt.datetime, accepted: bool) -> None:
    if accepted:
        check(ROOT, now=now).run_all(DATA, ENVELOPE)
    else:
        with pytest.raises(ValidityError):
            check(ROOT, now=now).run_all(DATA, ENVELOPE)


def test_the_result_names_exactly_the_keys_whose_signatures_counted() -> None:
    alice, bob, carol = generate(), generate(), generate()
    root = TrustRoot(
        1,
        2,
        tuple(trusted_key(k.public_key(), n) for k, n in ((alice, "alice"), (bob, "bob"), (carol, "carol"))),
    )
    verified = check(root).run_all(DATA, sign(bob, alice))
    assert verified.signer_names == ("alice", "bob")  # trust-root order; carol did not sign
    assert verified.signers == tuple(sorted(key_id(k.public_key()) for k in (alice, bob)))


def test_an_envelope_without_signatures_is_refused_as_unsigned() -> None:
    empty = serialize_envelope(dataclasses.replace(parse_envelope(ENVELOPE), signatures=()))
    with pytest.raises(SignatureError, match=r"^config is unsigned \(the \.sig holds no signatures\)$"):
        check(ROOT).run_all(DATA, empty)


def test_unknown_signers_are_each_named() -> None:
    one, two = generate(), generate()
    ids = sorted(key_id(k.public_key()) for k in (one, two))
    with pytest.raises(SignatureError, match=f"unknown key\\(s\\) {ids[0]}, {ids[1]}; the trust root"):
        check(ROOT).run_all(DATA, sign(one, two))


@pytest.mark.parametrize(
    ("fleet", "listed"),
    [
        (("a1", "a2", "a3", "a4", "a5"), "5 appliances (a1, a2, a3, a4, a5)"),
        (("a1", "a2", "a3", "a4", "a5", "a6", "a7"), "7 appliances (a1, a2, a3, a4, a5, ... 2 more)"),
    ],
)
def test_a_fleet_config_refused_for_an_unlisted_appliance_names_the_fleet_and_the_fix(
    fleet: tuple[str, ...], listed: str
) -> None:
    envelope = sign_config_bytes(
        DATA, KEY, appliance=fleet, version=7, expires=EXPIRES, not_before=NOT_BEFORE
    )
    checker = ConfigSignatureCheck(
        trust=ROOT, state=None, now=NOW, expected_name="edge-x", max_config_bytes=100_000
    )
    with pytest.raises(BindingError) as refused:
        checker.run_all(DATA, envelope)
    assert str(refused.value) == (
        f"config is signed for {listed}, but not for this one, 'edge-x'; "
        "add it to [appliance] names and sign again"
    )
