"""Detached config signatures: the envelope format (``CONFIG.sig``) and the admin-side signing.

Every signature covers ``midbox-config-v1\\0`` followed by the canonical JSON of the statement
(appliance name, version, expires, not_before, SHA-256 of the config's exact bytes) and the
signing key's id. Several admins may sign the same statement; each adds one signature.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hardening._strictjson import Fields, b64encode, canonical, loads_strict
from hardening.keys import KEY_ID_HEX, key_id
from hardening.signing_errors import EnvelopeError, SigningError
from hardening.trust import MAX_SIGNATURES, Signature
from hardening.utctime import format_time

ENVELOPE_FORMAT = "midbox-config-sig-v1"
CONFIG_DOMAIN = b"midbox-config-v1\0"
MAX_ENVELOPE_BYTES = 16_000
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
    """What the admins sign about one config file."""

    appliance: str
    version: int
    expires: dt.datetime
    not_before: dt.datetime
    sha256: str

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.appliance):
            raise SigningError(f"appliance name {self.appliance!r} is not valid")
        if self.version < 1:
            raise SigningError("config version must be a positive integer")
        if self.expires.microsecond or self.not_before.microsecond:
            raise SigningError("'expires' must be whole seconds")
        if self.not_before >= self.expires:
            raise SigningError("the config would expire before it becomes valid")

    def doc(self) -> dict[str, object]:
        return {
            "appliance": self.appliance,
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
        statement = Statement(
            appliance=f.take("appliance", str),
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


def _signature(s: Fields) -> Signature:
    return Signature(s.hex("key_id", KEY_ID_HEX), s.b64("sig", 64))


def sign_config_bytes(
    data: bytes,
    private_key: Ed25519PrivateKey,
    *,
    appliance: str,
    version: int,
    expires: dt.datetime,
    not_before: dt.datetime,
    existing: bytes | None = None,
) -> bytes:
    """Admin side: a new envelope for ``data``, or ``existing`` with this key's signature added.

    ``existing`` must describe the same bytes and statement; a second admin co-signs what the first
    signed, never something else.
    """
    sha = hashlib.sha256(data).hexdigest()
    if existing is None:
        statement = Statement(appliance, version, expires, not_before, sha)
        others: tuple[Signature, ...] = ()
    else:
        env = parse_envelope(existing)
        statement = env.statement
        if statement.sha256 != sha:
            raise SigningError(
                "the existing .sig is for other bytes; the config changed since the first signature "
                "(start over: midbox config sign --replace)"
            )
        wanted = (appliance, version, format_time(expires))
        if (statement.appliance, statement.version, format_time(statement.expires)) != wanted:
            raise SigningError(
                "the existing .sig states another appliance, version or expiry; "
                "sign with --replace to start a fresh signature set"
            )
        others = env.signatures
    kid = key_id(private_key.public_key())
    sig = Signature(kid, private_key.sign(statement.message(kid)))
    kept = (*(s for s in others if s.key_id != kid), sig)
    return serialize_envelope(UnverifiedEnvelope(statement, kept))
