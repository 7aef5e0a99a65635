"""The trust root: which admin keys the appliance accepts, and how many must sign.

The initial root is installed locally at enrollment (unsigned, anchored by its pinned hash). Every
later root must carry signatures from a threshold of the keys of the root it replaces, so whoever
holds the appliance's disk or the network cannot hand it a new set of keys.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from hardening._strictjson import Fields, b64encode, canonical, loads_strict
from hardening.signing.errors import TrustRootError
from hardening.signing.keys import KEY_ID_HEX, key_id, raw_public

TRUST_FORMAT = "midbox-trust-v1"
ROOT_DOMAIN = b"midbox-trust-root-v1\0"
MAX_TRUST_BYTES = 64_000
MAX_KEYS = 32
MAX_SIGNATURES = 32
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
_KEY_ID = re.compile(f"[0-9a-f]{{{KEY_ID_HEX}}}")


@dataclass(frozen=True)
class Signature:
    key_id: str
    sig: bytes


@dataclass(frozen=True)
class TrustedKey:
    key_id: str
    public: Ed25519PublicKey
    name: str


@dataclass(frozen=True)
class TrustRoot:
    """A parsed root. Whether it is trusted depends on how it was obtained (pin or rotation)."""

    version: int
    threshold: int
    keys: tuple[TrustedKey, ...]
    retired: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        ids = [k.key_id for k in self.keys]
        if not self.keys or len(self.keys) > MAX_KEYS:
            raise TrustRootError(f"trust root must hold 1..{MAX_KEYS} keys")
        if len(set(ids)) != len(ids):
            raise TrustRootError("trust root lists the same key twice")
        if not 1 <= self.threshold <= len(self.keys):
            raise TrustRootError(
                f"threshold {self.threshold} must be between 1 and the {len(self.keys)} keys"
            )
        if self.version < 1:
            raise TrustRootError("trust root version must be a positive integer")
        if set(self.retired) & set(ids):
            raise TrustRootError("trust root lists a key as both trusted and retired")

    def key(self, kid: str) -> TrustedKey | None:
        return next((k for k in self.keys if k.key_id == kid), None)

    def doc(self) -> dict[str, object]:
        return {
            "version": self.version,
            "threshold": self.threshold,
            "keys": [
                {"key_id": k.key_id, "public": b64encode(raw_public(k.public)), "name": k.name}
                for k in self.keys
            ],
            "retired": sorted(self.retired),
        }

    def message(self) -> bytes:
        """What rotation signatures cover: domain prefix, then the canonical root document."""
        return ROOT_DOMAIN + canonical(self.doc())

    @property
    def sha256(self) -> str:
        return hashlib.sha256(canonical(self.doc())).hexdigest()


def trusted_key(public: Ed25519PublicKey, name: str) -> TrustedKey:
    if not _NAME.fullmatch(name):
        raise TrustRootError(f"key name {name!r}: use letters, digits, '.', '_', '@', '-' (1-64)")
    return TrustedKey(key_id(public), public, name)


def count_valid(
    sigs: Iterable[Signature], root: TrustRoot, message_for: Callable[[str], bytes]
) -> tuple[set[str], set[str], set[str]]:
    """Split signatures into (valid, invalid, unknown) key ids; a key counts once however often it signs."""
    valid: set[str] = set()
    invalid: set[str] = set()
    unknown: set[str] = set()
    for s in sigs:
        k = root.key(s.key_id)
        if k is None:
            unknown.add(s.key_id)
            continue
        try:
            k.public.verify(s.sig, message_for(s.key_id))
        except InvalidSignature:
            invalid.add(s.key_id)
        else:
            valid.add(s.key_id)
    return valid, invalid - valid, unknown


def serialize(root: TrustRoot, sigs: Sequence[Signature] = ()) -> bytes:
    doc = {
        "format": TRUST_FORMAT,
        "root": root.doc(),
        "signatures": [{"key_id": s.key_id, "sig": b64encode(s.sig)} for s in sigs],
    }
    return canonical(doc) + b"\n"


def parse(data: bytes, what: str = "trust root") -> tuple[TrustRoot, tuple[Signature, ...]]:
    """Strictly parse a trust file. The result is not trusted until pinned or rotation-verified."""
    top = Fields(loads_strict(data, MAX_TRUST_BYTES, what, TrustRootError), what, TrustRootError)
    if top.take("format", str) != TRUST_FORMAT:
        raise top.fail(f"format must be {TRUST_FORMAT!r}")
    rootd = top.take("root", dict)
    sigs = top.each("signatures", MAX_SIGNATURES, _signature)
    top.done()
    r = Fields(rootd, f"{what}.root", TrustRootError)
    version = r.take("version", int)
    threshold = r.take("threshold", int)
    keys = r.each("keys", MAX_KEYS, _key)
    retired = r.take("retired", list)
    r.done()
    if not all(isinstance(x, str) and _KEY_ID.fullmatch(x) for x in retired):
        raise TrustRootError(f"{what}: 'retired' must list key ids")
    return TrustRoot(version, threshold, keys, tuple(retired)), sigs


def _key(f: Fields) -> TrustedKey:
    kid = f.hex("key_id", KEY_ID_HEX)
    public = Ed25519PublicKey.from_public_bytes(f.b64("public", 32))
    tk = trusted_key(public, f.take("name", str))
    if tk.key_id != kid:
        raise f.fail(f"key_id {kid} does not match its public key")
    return tk


def _signature(f: Fields) -> Signature:
    return Signature(f.hex("key_id", KEY_ID_HEX), f.b64("sig", 64))


def sign_root(data: bytes, private_key: Ed25519PrivateKey) -> bytes:
    """Admin side: add this key's signature to a proposed root file (idempotent per key)."""
    root, sigs = parse(data, "new trust root")
    kid = key_id(private_key.public_key())
    kept = [s for s in sigs if s.key_id != kid]
    kept.append(Signature(kid, private_key.sign(root.message())))
    return serialize(root, sorted(kept, key=lambda s: s.key_id))


def propose(current: TrustRoot, keys: Sequence[TrustedKey], threshold: int) -> TrustRoot:
    """Admin side: the successor of ``current`` with ``keys``; removed keys are listed as retired."""
    new_ids = {k.key_id for k in keys}
    retired = set(current.retired) | {k.key_id for k in current.keys if k.key_id not in new_ids}
    return TrustRoot(current.version + 1, threshold, tuple(keys), tuple(sorted(retired - new_ids)))


def verify_rotation(current: TrustRoot, new: TrustRoot, sigs: Sequence[Signature]) -> set[str]:
    """The new root must be newer and signed by ``current.threshold`` distinct current keys."""
    if new.version <= current.version:
        raise TrustRootError(
            f"new trust root has version {new.version}, not newer than the installed {current.version}"
        )
    valid, invalid, unknown = count_valid(sigs, current, lambda _kid: new.message())
    if len(valid) < current.threshold:
        detail = f"{len(valid)} valid signature(s) from current keys"
        if invalid:
            detail += f", {len(invalid)} invalid"
        if unknown:
            detail += f", {len(unknown)} from keys the current root does not hold"
        raise TrustRootError(
            f"trust root rotation refused: {detail}; the current root needs {current.threshold}. "
            "Have enough current admins run 'midbox trust sign-root' on the new root"
        )
    return valid
