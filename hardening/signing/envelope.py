"""Detached config signatures: the envelope format (``CONFIG.sig``) and the admin-side signing.

Every signature covers ``midbox-config-v1\\0`` followed by the canonical JSON of the statement
(appliance name, version, expires, not_before, SHA-256 of the config's exact bytes) and the
signing key's id. Several admins may sign the same statement; each adds one signature.

A fleet statement names several appliances (``appliances``, a list, in place of ``appliance``): one
signature then serves each of them. A list of one is written as ``appliance``, so it signs exactly
what a single-name config signs.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hardening._strictjson import Fields, b64encode, canonical, loads_strict
from hardening.signing.errors import EnvelopeError, SigningError
from hardening.signing.keys import KEY_ID_HEX, key_id
from hardening.signing.trust import MAX_SIGNATURES, Signature
from hardening.utctime import format_time

ENVELOPE_FORMAT = "midbox-config-sig-v1"
CONFIG_DOMAIN = b"midbox-config-v1\0"
MAX_ENVELOPE_BYTES = 16_000
# Names one fleet config may bind to: 128 names of 64 characters still leave the envelope room for
# its signatures. A larger fleet is split into several signed configs.
MAX_FLEET_NAMES = 128
_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def _parse_time(f: Fields, key: str) -> dt.datetime:
    text = f.take(key, str)
    if not _TIME.fullmatch(text):
        raise f.fail(f"field {key!r} must look like 2027-06-01T00:00:00Z")
    try:
        return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
    except ValueError as e:
        raise f.fail(f"field {key!r} is not a real date/time") from e


@dataclass(frozen=True)
class Statement:
    """What the admins sign about one config file.

    ``appliance`` is the one appliance it is for; a fleet statement leaves it "" and lists ``fleet``.
    """

    appliance: str
    version: int
    expires: dt.datetime
    not_before: dt.datetime
    sha256: str
    fleet: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.fleet:
            if self.appliance:
                raise SigningError("a statement names one appliance or a fleet, not both")
            if not 2 <= len(self.fleet) <= MAX_FLEET_NAMES:
                raise SigningError(f"a fleet lists 2 to {MAX_FLEET_NAMES} appliance names")
            if len(set(self.fleet)) != len(self.fleet):
                raise SigningError("a fleet lists an appliance name twice")
        for name in self.names:
            if not _NAME.fullmatch(name):
                raise SigningError(f"appliance name {name[:80]!r} is not valid")
        if self.version < 1:
            raise SigningError("config version must be a positive integer")
        if self.expires.microsecond or self.not_before.microsecond:
            raise SigningError("'expires' must be whole seconds")
        if self.not_before >= self.expires:
            raise SigningError("the config would expire before it becomes valid")

    @staticmethod
    def binding(names: tuple[str, ...]) -> tuple[str, tuple[str, ...]]:
        """``appliance`` and ``fleet`` for a statement bound to ``names`` (one name, or a fleet)."""
        return (names[0], ()) if len(names) == 1 else ("", names)

    @property
    def names(self) -> tuple[str, ...]:
        """Every appliance this statement is for."""
        return self.fleet or (self.appliance,)

    def doc(self) -> dict[str, object]:
        bound: dict[str, object] = (
            {"appliances": list(self.fleet)} if self.fleet else {"appliance": self.appliance}
        )
        return {
            **bound,
            "version": self.version,
            "expires": format_time(self.expires),
            "not_before": format_time(self.not_before),
            "sha256": self.sha256,
        }

    def message(self, kid: str) -> bytes:
        """The exact bytes one key signs: domain prefix, canonical statement with the key id."""
        return CONFIG_DOMAIN + canonical({**self.doc(), "key_id": kid})


@dataclass(frozen=True)
class UnverifiedEnvelope:
    """A parsed ``.sig`` file. Nothing in it is believed until ``ConfigSignatureCheck`` has run."""

    statement: Statement
    signatures: tuple[Signature, ...]


def serialize_envelope(env: UnverifiedEnvelope) -> bytes:
    sigs = sorted(env.signatures, key=lambda s: s.key_id)
    doc = {
        "format": ENVELOPE_FORMAT,
        **env.statement.doc(),
        "signatures": [{"key_id": s.key_id, "sig": b64encode(s.sig)} for s in sigs],
    }
    return canonical(doc) + b"\n"


def parse_envelope(data: bytes) -> UnverifiedEnvelope:
    """Strict: size first; duplicate fields, bad base64, trailing data and unknown fields are refused."""
    what = "signature file"
    f = Fields(loads_strict(data, MAX_ENVELOPE_BYTES, what, EnvelopeError), what, EnvelopeError)
    fmt = f.take("format", str)
    if fmt != ENVELOPE_FORMAT:
        raise f.fail(f"format {fmt[:40]!r} is not {ENVELOPE_FORMAT!r}; sign with this midbox version")
    try:
        appliance, fleet = _binding(f)
        statement = Statement(
            appliance=appliance,
            fleet=fleet,
            version=f.take("version", int),
            expires=_parse_time(f, "expires"),
            not_before=_parse_time(f, "not_before"),
            sha256=f.hex("sha256", 64),
        )
    except EnvelopeError:
        raise
    except SigningError as e:
        raise EnvelopeError(f"{what}: {e}") from e
    sigs = f.each("signatures", MAX_SIGNATURES, _signature)
    f.done()
    if len({s.key_id for s in sigs}) != len(sigs):
        raise EnvelopeError(f"{what}: the same key signs twice")
    return UnverifiedEnvelope(statement, sigs)


def _binding(f: Fields) -> tuple[str, tuple[str, ...]]:
    """``appliance`` (one name) or ``appliances`` (a fleet of two or more), never both."""
    fleet = f.optional("appliances", list)
    if fleet is None:
        return f.take("appliance", str), ()
    if f.optional("appliance", str) is not None:
        raise f.fail("holds both 'appliance' and 'appliances'")
    if len(fleet) > MAX_FLEET_NAMES or not all(isinstance(n, str) for n in fleet):
        raise f.fail(f"field 'appliances' must be a list of at most {MAX_FLEET_NAMES} names")
    if len(fleet) < 2:
        raise f.fail("field 'appliances' lists two or more names (one is written as 'appliance')")
    return "", tuple(fleet)


def _signature(s: Fields) -> Signature:
    return Signature(s.hex("key_id", KEY_ID_HEX), s.b64("sig", 64))


def sign_config_bytes(
    data: bytes,
    private_key: Ed25519PrivateKey,
    *,
    appliance: str | tuple[str, ...],
    version: int,
    expires: dt.datetime,
    not_before: dt.datetime,
    existing: bytes | None = None,
) -> bytes:
    """Admin side: a new envelope for ``data``, or ``existing`` with this key's signature added.

    ``existing`` must describe the same bytes and statement; a second admin co-signs what the first
    signed, never something else. ``appliance`` is one name, or the names of a fleet.
    """
    sha = hashlib.sha256(data).hexdigest()
    names = (appliance,) if isinstance(appliance, str) else appliance
    if not names:
        raise SigningError("a config is signed for at least one appliance name")
    single, fleet = Statement.binding(names)
    if existing is None:
        statement = Statement(single, version, expires, not_before, sha, fleet=fleet)
        others: tuple[Signature, ...] = ()
    else:
        env = parse_envelope(existing)
        statement = env.statement
        if statement.sha256 != sha:
            raise SigningError(
                "the existing .sig is for other bytes; the config changed since the first signature "
                "(start over: midbox config sign --replace)"
            )
        wanted = (names, version, format_time(expires))
        if (statement.names, statement.version, format_time(statement.expires)) != wanted:
            raise SigningError(
                "the existing .sig states another appliance, version or expiry; "
                "sign with --replace to start a fresh signature set"
            )
        others = env.signatures
    kid = key_id(private_key.public_key())
    sig = Signature(kid, private_key.sign(statement.message(kid)))
    kept = (*(s for s in others if s.key_id != kid), sig)
    return serialize_envelope(UnverifiedEnvelope(statement, kept))
