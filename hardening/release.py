"""Release signatures in minisign's format, and offline verification of a release bundle.

A bundle is a tar.gz (or the folder it unpacks to) holding one top folder with the binary, the
SBOM, the install files, ``SHA256SUMS`` and ``SHA256SUMS.minisig``. The signature covers the
sums; the sums cover every other file. Anyone can check a bundle with ``minisign -V`` as well as
with ``midbox bundle verify``; both read the same public key file.

minisign format (prehashed, the default of minisign 0.10 and later):
  public key:  "untrusted comment: ..." / base64("Ed" || key_id[8] || ed25519_pk[32])
  signature:   "untrusted comment: ..." / base64("ED" || key_id[8] || sig(BLAKE2b-512(file))[64])
               "trusted comment: TEXT" / base64(sig(sig_bytes || TEXT)[64])
The legacy "Ed" signature (over the file itself) is accepted when verifying, never produced.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import stat
import tarfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from hardening.errors import HardeningError
from hardening.signing.keys import MAX_KEY_FILE_BYTES

SUMS_NAME = "SHA256SUMS"
SIG_NAME = "SHA256SUMS.minisig"
MAX_SIG_FILE_BYTES = 4096
MAX_SUMS_BYTES = 64 * 1024
MAX_COMMENT_CHARS = 1024
_ALG_PUBKEY = b"Ed"
_ALG_LEGACY = b"Ed"
_ALG_PREHASHED = b"ED"
_FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}")
_SUM_LINE = re.compile(r"([0-9a-f]{64})  ([^\r\n]+)")


class ReleaseError(HardeningError):
    """A release bundle, its signature or the release key is not valid; do not install it."""


@dataclass(frozen=True)
class ReleaseLimits:
    """Caps for reading a bundle; the caller passes the appliance's (appliance/limits.py)."""

    bundle_bytes: int
    member_bytes: int
    members: int


@dataclass(frozen=True)
class MinisignPublicKey:
    key_id: bytes
    key: Ed25519PublicKey

    @property
    def key_id_hex(self) -> str:
        # minisign prints the key id as a little-endian 64-bit number in upper-case hex.
        return f"{int.from_bytes(self.key_id, 'little'):016X}"


@dataclass(frozen=True)
class UnverifiedSignature:
    """A parsed .minisig file; nothing in it is trusted until verify_signature() returns."""

    algorithm: bytes
    key_id: bytes
    signature: bytes
    trusted_comment: str
    global_signature: bytes


@dataclass(frozen=True)
class VerifiedSignature:
    key_id_hex: str
    trusted_comment: str


@dataclass(frozen=True)
class VerifiedRelease:
    """A bundle whose signature, sums and file list all checked out."""

    top: str
    key_id_hex: str
    trusted_comment: str
    files: tuple[tuple[str, str], ...]  # (name, sha256), sorted


def key_id_for(public_raw: bytes) -> bytes:
    """A stable key id derived from the key (minisign picks a random one; any 8 bytes are valid)."""
    return hashlib.blake2b(public_raw, digest_size=8).digest()


def _b64(line: str, what: str) -> bytes:
    try:
        return base64.b64decode(line.strip(), validate=True)
    except (binascii.Error, ValueError) as e:
        raise ReleaseError(f"{what} is not valid base64: check that the file is not damaged") from e


def _text(data: bytes, cap: int, what: str) -> list[str]:
    if len(data) > cap:
        raise ReleaseError(f"{what} is larger than {cap} bytes: it is not a minisign file")
    try:
        return data.decode("utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise ReleaseError(f"{what} is not UTF-8 text") from e


def parse_public_key(data: bytes) -> MinisignPublicKey:
    """A minisign public key file, or the bare base64 line (as given to ``minisign -P``)."""
    lines = [ln for ln in _text(data, MAX_KEY_FILE_BYTES, "the public key file") if ln.strip()]
    if lines and lines[0].startswith("untrusted comment:"):
        lines = lines[1:]
    if len(lines) != 1:
        raise ReleaseError("the public key file must hold one minisign public key")
    raw = _b64(lines[0], "the public key")
    if len(raw) != 42 or raw[:2] != _ALG_PUBKEY:
        raise ReleaseError("the public key is not an Ed25519 minisign public key")
    return MinisignPublicKey(raw[2:10], Ed25519PublicKey.from_public_bytes(raw[10:]))


def parse_signature(data: bytes) -> UnverifiedSignature:
    lines = _text(data, MAX_SIG_FILE_BYTES, "the signature file")
    if len(lines) != 4 or not lines[0].startswith("untrusted comment:"):
        raise ReleaseError("the signature file is not in minisign format (4 lines expected)")
    if not lines[2].startswith("trusted comment: "):
        raise ReleaseError("the signature file has no trusted comment line")
    raw = _b64(lines[1], "the signature")
    if len(raw) != 74 or raw[:2] not in (_ALG_LEGACY, _ALG_PREHASHED):
        raise ReleaseError("the signature is not an Ed25519 minisign signature")
    global_sig = _b64(lines[3], "the global signature")
    if len(global_sig) != 64:
        raise ReleaseError("the global signature has the wrong length")
    comment = lines[2][len("trusted comment: ") :]
    return UnverifiedSignature(raw[:2], raw[2:10], raw[10:], comment, global_sig)


def verify_signature(message: bytes, sig: UnverifiedSignature, key: MinisignPublicKey) -> VerifiedSignature:
    # 1. the signature names the key we trust
    if sig.key_id != key.key_id:
        found = f"{int.from_bytes(sig.key_id, 'little'):016X}"
        raise ReleaseError(f"signed by key {found}, not by the release key {key.key_id_hex}")
    # 2. the signed data: the file itself (legacy) or its BLAKE2b-512 (prehashed)
    signed = hashlib.blake2b(message).digest() if sig.algorithm == _ALG_PREHASHED else message
    try:
        # 3. the signature over the data
        key.key.verify(sig.signature, signed)
        # 4. the global signature binds the trusted comment to it
        key.key.verify(sig.global_signature, sig.signature + sig.trusted_comment.encode("utf-8"))
    except InvalidSignature as e:
        raise ReleaseError("the release signature does not verify: the bundle was changed or damaged") from e
    return VerifiedSignature(key.key_id_hex, sig.trusted_comment)


def sign(message: bytes, private: Ed25519PrivateKey, trusted_comment: str) -> bytes:
    """A prehashed minisign signature file; deterministic, since Ed25519 signatures are."""
    if "\n" in trusted_comment or "\r" in trusted_comment or len(trusted_comment) > MAX_COMMENT_CHARS:
        raise ReleaseError("the trusted comment must be one line of at most 1024 characters")
    public_raw = private.public_key().public_bytes_raw()
    key_id = key_id_for(public_raw)
    signature = private.sign(hashlib.blake2b(message).digest())
    global_sig = private.sign(signature + trusted_comment.encode("utf-8"))
    key_hex = MinisignPublicKey(key_id, private.public_key()).key_id_hex
    lines = [
        f"untrusted comment: signature from midbox release key {key_hex}",
        base64.b64encode(_ALG_PREHASHED + key_id + signature).decode("ascii"),
        f"trusted comment: {trusted_comment}",
        base64.b64encode(global_sig).decode("ascii"),
    ]
    return ("\n".join(lines) + "\n").encode("utf-8")


def public_key_file(public: Ed25519PublicKey) -> bytes:
    raw = public.public_bytes_raw()
    key = MinisignPublicKey(key_id_for(raw), public)
    body = base64.b64encode(_ALG_PUBKEY + key.key_id + raw).decode("ascii")
    return f"untrusted comment: minisign public key {key.key_id_hex}\n{body}\n".encode("ascii")


def render_sums(files: Mapping[str, str]) -> bytes:
    """``sha256sum``-compatible lines, sorted by name."""
    for name in files:
        _check_name(name)
    return "".join(f"{files[n]}  {n}\n" for n in sorted(files)).encode("ascii")


def _check_name(name: str) -> None:
    if not _FILE_NAME.fullmatch(name):
        raise ReleaseError(f"file name {name[:80]!r} is not allowed in a release bundle")


def parse_sums(data: bytes) -> dict[str, str]:
    if len(data) > MAX_SUMS_BYTES:
        raise ReleaseError(f"{SUMS_NAME} is larger than {MAX_SUMS_BYTES} bytes")
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError as e:
        raise ReleaseError(f"{SUMS_NAME} is not ASCII") from e
    sums: dict[str, str] = {}
    for n, line in enumerate(text.splitlines(), 1):
        m = _SUM_LINE.fullmatch(line)
        if not m:
            raise ReleaseError(f"{SUMS_NAME} line {n} is not '<sha256>  <name>'")
        digest, name = m.groups()
        _check_name(name)
        if name in sums or name in (SUMS_NAME, SIG_NAME):
            raise ReleaseError(f"{SUMS_NAME} lists {name!r} twice or lists itself")
        sums[name] = digest
    if not sums:
        raise ReleaseError(f"{SUMS_NAME} lists no files")
    return sums


@dataclass(frozen=True)
class _Member:
    name: str
    sha256: str
    data: bytes  # kept only for the sums and the signature


def _hash_stream(fh: IO[bytes], cap: int, name: str, keep: bool) -> _Member:
    digest = hashlib.sha256()
    kept = bytearray()
    total = 0
    while chunk := fh.read(1 << 20):
        total += len(chunk)
        if total > cap:
            raise ReleaseError(f"bundle member {name!r} is larger than {cap} bytes")
        digest.update(chunk)
        if keep:
            kept += chunk
    return _Member(name, digest.hexdigest(), bytes(kept))


def _split(path: str) -> tuple[str, str]:
    parts = path.split("/")
    if len(parts) != 2 or not all(parts):
        raise ReleaseError(f"bundle member {path[:120]!r} is not a file in the bundle's one top folder")
    _check_name(parts[0])
    _check_name(parts[1])
    return parts[0], parts[1]


def _tar_members(path: Path, limits: ReleaseLimits) -> Iterator[tuple[str, _Member]]:
    try:
        with tarfile.open(path, mode="r:gz") as tar:
            count = total = 0
            for info in tar:
                count += 1
                if count > limits.members:
                    raise ReleaseError(f"the bundle has more than {limits.members} members")
                name = info.name.removeprefix("./").rstrip("/")
                if info.isdir() and "/" not in name:
                    _check_name(name)
                    continue
                if not info.isreg():
                    raise ReleaseError(f"bundle member {name[:120]!r} is not a regular file")
                top, base = _split(name)
                # Size first, from the header: a gzip bomb is refused before it is inflated.
                total += info.size
                if info.size > limits.member_bytes or total > limits.bundle_bytes:
                    raise ReleaseError(f"bundle member {name!r} is too large for a midbox bundle")
                fh = tar.extractfile(info)
                if fh is None:  # pragma: no cover - isreg() members always have data
                    raise ReleaseError(f"bundle member {name!r} cannot be read")
                yield top, _hash_stream(fh, limits.member_bytes, name, base in (SUMS_NAME, SIG_NAME))
    except (tarfile.TarError, EOFError, OSError) as e:
        raise ReleaseError(f"{path.name} is not a readable tar.gz bundle: {e}") from e


def _dir_members(path: Path, limits: ReleaseLimits) -> Iterator[tuple[str, _Member]]:
    entries = sorted(path.iterdir())
    if len(entries) > limits.members:
        raise ReleaseError(f"the bundle folder has more than {limits.members} entries")
    for entry in entries:
        mode = entry.lstat().st_mode
        if not stat.S_ISREG(mode):
            raise ReleaseError(f"{entry.name!r} in the bundle folder is not a regular file")
        _check_name(entry.name)
        with entry.open("rb") as fh:
            keep = entry.name in (SUMS_NAME, SIG_NAME)
            yield path.name, _hash_stream(fh, limits.member_bytes, f"{path.name}/{entry.name}", keep)


def verify_bundle(path: Path, key: MinisignPublicKey, limits: ReleaseLimits) -> VerifiedRelease:
    """Check a bundle offline: signature over SHA256SUMS, every file's hash, no extra files."""
    # 1. size first, then read every member without extracting anything to disk
    if path.is_dir():
        members = list(_dir_members(path, limits))
    else:
        size = path.stat().st_size
        if size > limits.bundle_bytes:
            raise ReleaseError(f"{path.name} is larger than {limits.bundle_bytes} bytes: not a midbox bundle")
        members = list(_tar_members(path, limits))
    tops = {top for top, _ in members}
    if len(tops) != 1:
        raise ReleaseError("a bundle must hold exactly one top folder")
    found: dict[str, _Member] = {}
    for _, m in members:
        base = m.name.rsplit("/", 1)[-1]
        if base in found:
            raise ReleaseError(f"the bundle holds {base!r} twice")
        found[base] = m
    if SUMS_NAME not in found or SIG_NAME not in found:
        raise ReleaseError(f"the bundle has no {SUMS_NAME} or no {SIG_NAME}: it is not a signed release")
    # 2. the signature over the sums
    sums_bytes = found.pop(SUMS_NAME).data
    verified = verify_signature(sums_bytes, parse_signature(found.pop(SIG_NAME).data), key)
    # 3. the sums over every other file, and nothing unlisted
    sums = parse_sums(sums_bytes)
    missing = sorted(set(sums) - set(found))
    extra = sorted(set(found) - set(sums))
    if missing or extra:
        raise ReleaseError(f"bundle files do not match {SUMS_NAME}: missing {missing}, unlisted {extra}")
    for name, digest in sums.items():
        if found[name].sha256 != digest:
            raise ReleaseError(f"{name} does not match its SHA-256 in {SUMS_NAME}: the bundle was changed")
    return VerifiedRelease(
        tops.pop(), verified.key_id_hex, verified.trusted_comment, tuple(sorted(sums.items()))
    )
