"""The ordered verification of a signed config, one named step per check.

Order matters: nothing of the envelope is believed before its signatures are checked, and the TOML
is parsed by the caller only after step 8. Calling a step out of order raises ``StepOrderError``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass

from hardening.signing.envelope import MAX_ENVELOPE_BYTES, Statement, UnverifiedEnvelope, parse_envelope
from hardening.signing.errors import (
    BindingError,
    EnvelopeError,
    SignatureError,
    StepOrderError,
    ValidityError,
)
from hardening.signing.rollback import PinnedState
from hardening.signing.trust import TrustRoot, count_valid
from hardening.utctime import format_time

CLOCK_SKEW = dt.timedelta(minutes=5)
STEPS = (
    "size",
    "envelope",
    "known_keys",
    "threshold",
    "payload_hash",
    "appliance_name",
    "validity",
    "version",
)


def _listed(names: tuple[str, ...], shown: int = 5) -> str:
    more = f", ... {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


@dataclass(frozen=True)
class VerifiedStatement:
    """The statement after steps 1-8: signed, matching the bytes, current, not rolled back."""

    statement: Statement
    signers: tuple[str, ...]
    signer_names: tuple[str, ...]


class ConfigSignatureCheck:
    """One verification run. Create it, call ``step1`` .. ``step8`` in order, then ``result()``."""

    def __init__(
        self,
        *,
        trust: TrustRoot,
        state: PinnedState | None,
        now: dt.datetime,
        expected_name: str | None,
        max_config_bytes: int,
        skew: dt.timedelta = CLOCK_SKEW,
    ) -> None:
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        self._trust = trust
        self._state = state
        self._now = now
        self._expected = expected_name if expected_name is not None else (state and state.appliance_name)
        self._max_config = max_config_bytes
        self._skew = skew
        self._done = 0
        self._config = b""
        self._envelope_bytes = b""
        self._env: UnverifiedEnvelope | None = None
        self._valid: set[str] = set()

    def _enter(self, step: int) -> None:
        if self._done != step - 1:
            raise StepOrderError(
                f"verification step {step} ({STEPS[step - 1]}) called after step {self._done}; "
                "steps must run in order"
            )

    def _leave(self, step: int) -> None:
        self._done = step

    @property
    def _envelope(self) -> UnverifiedEnvelope:
        assert self._env is not None  # guaranteed by the step order
        return self._env

    def step1_size(self, config: bytes, envelope: bytes | None) -> None:
        """1. Size caps, before anything is parsed. A missing envelope is an unsigned config."""
        self._enter(1)
        if envelope is None:
            raise SignatureError(
                "config is unsigned (no .sig file beside it); sign it offline with 'midbox config sign'"
            )
        if len(config) > self._max_config:
            raise EnvelopeError(f"config is {len(config)} bytes, more than the {self._max_config} allowed")
        if len(envelope) > MAX_ENVELOPE_BYTES:
            raise EnvelopeError(f"signature file is {len(envelope)} bytes, more than {MAX_ENVELOPE_BYTES}")
        self._config, self._envelope_bytes = config, envelope
        self._leave(1)

    def step2_envelope(self) -> None:
        """2. Strict parse of the envelope (duplicates, bad base64, trailing data, unknown fields refused)."""
        self._enter(2)
        self._env = parse_envelope(self._envelope_bytes)
        self._leave(2)

    def step3_known_keys(self) -> None:
        """3. At least one signature must come from a key of the trust root."""
        self._enter(3)
        sigs = self._envelope.signatures
        if not sigs:
            raise SignatureError("config is unsigned (the .sig holds no signatures)")
        ids = [s.key_id for s in sigs]
        if not any(self._trust.key(k) for k in ids):
            retired = [k for k in ids if k in self._trust.retired]
            if retired:
                raise SignatureError(
                    f"config is signed only by key {retired[0]}, which was removed from the trust root; "
                    "have a current admin sign it"
                )
            raise SignatureError(
                f"config is signed only by unknown key(s) {', '.join(ids)}; the trust root does not hold "
                "them (see 'midbox trust show')"
            )
        self._leave(3)

    def step4_threshold(self) -> None:
        """4. A threshold of valid signatures from distinct trusted keys."""
        self._enter(4)
        env = self._envelope
        valid, invalid, _unknown = count_valid(env.signatures, self._trust, env.statement.message)
        if invalid:
            # A bad signature from a trusted key means the statement or signature was altered.
            raise SignatureError(
                f"signature by key {sorted(invalid)[0]} does not verify: the .sig file was altered "
                "or made for another statement"
            )
        if len(valid) < self._trust.threshold:
            raise SignatureError(
                f"config has {len(valid)} valid signature(s) from trusted keys; the trust root needs "
                f"{self._trust.threshold} (two-person rule): have another admin co-sign it"
            )
        self._valid = valid
        self._leave(4)

    def step5_payload_hash(self) -> None:
        """5. The config's exact bytes must hash to the signed SHA-256."""
        self._enter(5)
        if hashlib.sha256(self._config).hexdigest() != self._envelope.statement.sha256:
            raise BindingError(
                "config bytes do not match the signed SHA-256: the file was changed after signing; "
                "put the signed file back or sign the edit (midbox config sign --replace)"
            )
        self._leave(5)

    def step6_appliance_name(self) -> None:
        """6. The config must be made for this appliance (or list it, for a fleet config)."""
        self._enter(6)
        st = self._envelope.statement
        if self._expected is not None and self._expected not in st.names:
            if st.fleet:
                raise BindingError(
                    f"config is signed for {len(st.fleet)} appliances ({_listed(st.fleet)}), but not for "
                    f"this one, {self._expected!r}; add it to [appliance] names and sign again"
                )
            raise BindingError(
                f"config is signed for appliance {st.appliance!r}, but this is {self._expected!r}"
            )
        self._leave(6)

    def step7_validity(self) -> None:
        """7. Not expired and not yet valid, with a small allowance for clock skew."""
        self._enter(7)
        st = self._envelope.statement
        if self._now > st.expires + self._skew:
            raise ValidityError(
                f"config expired at {format_time(st.expires)}; sign a new version with a later 'expires'"
            )
        if self._now < st.not_before - self._skew:
            raise ValidityError(
                f"config is not yet valid: valid from {format_time(st.not_before)} (check the clock)"
            )
        self._leave(7)

    def step8_version(self) -> None:
        """8. Not older than the highest version accepted; the same version only with the same bytes."""
        self._enter(8)
        if self._state is not None:
            st = self._envelope.statement
            self._state.check_config_version(st.version, st.sha256)
        self._leave(8)

    def run_all(self, config: bytes, envelope: bytes | None) -> VerifiedStatement:
        self.step1_size(config, envelope)
        self.step2_envelope()
        self.step3_known_keys()
        self.step4_threshold()
        self.step5_payload_hash()
        self.step6_appliance_name()
        self.step7_validity()
        self.step8_version()
        return self.result()

    def result(self) -> VerifiedStatement:
        if self._done != len(STEPS):
            raise StepOrderError(f"result() called after step {self._done} of {len(STEPS)}")
        signers = tuple(sorted(self._valid))
        names = tuple(k.name for k in self._trust.keys if k.key_id in self._valid)
        return VerifiedStatement(self._envelope.statement, signers, names)
