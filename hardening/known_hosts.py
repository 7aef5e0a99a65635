"""Pinned SSH host keys in OpenSSH ``known_hosts`` format: an unknown or changed key is never accepted.

Lines are ``NAMES KEYTYPE BASE64 [COMMENT]`` where NAMES is a comma-separated list of ``host`` (port 22),
``[host]:port`` or an OpenSSH hashed name ``|1|salt|hash``. Marker lines (``@cert-authority``,
``@revoked``) and wildcard patterns are refused rather than half-understood: a pin file that this
module cannot read exactly is an error, not a partial allowlist.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from hardening.atomic import atomic_write
from hardening.errors import HardeningError

MAX_KNOWN_HOSTS_BYTES = 4_000_000
MAX_KEY_BLOB_BYTES = 16_384

# OpenSSH key types a pin may hold; the first word inside the key blob must equal the line's type.
KEY_TYPES = frozenset(
    {
        "ssh-ed25519",
        "ssh-rsa",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
    }
)


class KnownHostsError(HardeningError):
    """The known_hosts file or a public key file is unreadable or malformed."""


class Verdict(enum.Enum):
    MATCH = "match"
    UNKNOWN = "unknown"
    CHANGED = "changed"


@dataclass(frozen=True)
class HostKey:
    keytype: str
    blob: bytes

    def fingerprint(self) -> str:
        """The SHA256 fingerprint as ``ssh-keygen -l`` prints it."""
        digest = base64.b64encode(hashlib.sha256(self.blob).digest()).decode().rstrip("=")
        return f"SHA256:{digest}"

    def line_for(self, name: str) -> str:
        return f"{name} {self.keytype} {base64.b64encode(self.blob).decode()}"


@dataclass(frozen=True)
class _Entry:
    names: tuple[str, ...]
    key: HostKey

    def matches(self, name: str) -> bool:
        for pattern in self.names:
            if pattern.startswith("|1|"):
                if _hashed_matches(pattern, name):
                    return True
            elif pattern.lower() == name.lower():
                return True
        return False


def host_pattern(host: str, port: int) -> str:
    """The known_hosts name of ``host`` at ``port``: bare for 22, ``[host]:port`` otherwise (as OpenSSH)."""
    host = host.strip("[]").lower()
    return host if port == 22 else f"[{host}]:{port}"


def parse_key(keytype: str, b64: str, *, where: str) -> HostKey:
    """Decode one public key and check that its blob says the same type as its text."""
    if keytype not in KEY_TYPES:
        raise KnownHostsError(f"{where}: unsupported key type {keytype[:40]!r}")
    if len(b64) > MAX_KEY_BLOB_BYTES * 2:
        raise KnownHostsError(f"{where}: key too long")
    try:
        blob = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError) as e:
        raise KnownHostsError(f"{where}: key is not valid base64") from e
    if len(blob) < 4:
        raise KnownHostsError(f"{where}: key blob too short")
    (n,) = struct.unpack(">I", blob[:4])
    if blob[4 : 4 + n] != keytype.encode():
        raise KnownHostsError(f"{where}: key blob does not hold a {keytype} key")
    return HostKey(keytype, blob)


def parse_known_hosts(data: bytes, *, source: str = "known_hosts") -> list[_Entry]:
    if len(data) > MAX_KNOWN_HOSTS_BYTES:
        raise KnownHostsError(f"{source} is larger than {MAX_KNOWN_HOSTS_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise KnownHostsError(f"{source} is not UTF-8") from e
    entries: list[_Entry] = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{source} line {lineno}"
        if line.startswith("@"):
            raise KnownHostsError(f"{where}: markers such as @cert-authority/@revoked are not supported")
        fields = line.split()
        if len(fields) < 3:
            raise KnownHostsError(f"{where}: expected 'HOST KEYTYPE BASE64'")
        names = tuple(fields[0].split(","))
        if any(c in fields[0] for c in "*?!"):
            raise KnownHostsError(f"{where}: wildcard host patterns are not supported; pin each host")
        entries.append(_Entry(names, parse_key(fields[1], fields[2], where=where)))
    return entries


def parse_public_key_file(data: bytes, *, source: str) -> HostKey:
    """Read an OpenSSH public key (``TYPE BASE64 [COMMENT]``) or a one-key ``ssh-keyscan`` line."""
    if len(data) > MAX_KEY_BLOB_BYTES * 4:
        raise KnownHostsError(f"{source} is too large to be a public key")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise KnownHostsError(f"{source} is not a text public key") from e
    keys: list[HostKey] = []
    for raw in text.splitlines():
        fields = raw.split()
        if not fields or fields[0].startswith("#"):
            continue
        for i, word in enumerate(fields[:-1]):
            if word in KEY_TYPES:
                keys.append(parse_key(word, fields[i + 1], where=source))
                break
        else:
            raise KnownHostsError(f"{source}: no OpenSSH public key found (expected 'TYPE BASE64')")
    if len(keys) != 1:
        raise KnownHostsError(f"{source}: expected exactly one public key, found {len(keys)}")
    return keys[0]


def _hashed_matches(pattern: str, name: str) -> bool:
    parts = pattern.split("|")
    if len(parts) != 4:
        return False
    try:
        salt = base64.b64decode(parts[2], validate=True)
        expected = base64.b64decode(parts[3], validate=True)
    except (binascii.Error, ValueError):
        return False
    actual = hmac.new(salt, name.encode(), hashlib.sha1).digest()
    return hmac.compare_digest(actual, expected)


class KnownHosts:
    """The pin file of one appliance. Read fresh for every check, so an edit takes effect at once."""

    def __init__(self, path: Path) -> None:
        self._path = path

    @property
    def path(self) -> Path:
        return self._path

    def _entries(self) -> list[_Entry]:
        try:
            data = self._path.read_bytes()
        except FileNotFoundError:
            return []
        except OSError as e:
            raise KnownHostsError(f"cannot read {self._path.name}: {e.strerror}") from e
        return parse_known_hosts(data, source=self._path.name)

    def keys_for(self, names: Iterable[str], port: int) -> list[HostKey]:
        """Every key pinned for any of ``names`` (host names or addresses) at ``port``."""
        patterns = [host_pattern(n, port) for n in names]
        found: list[HostKey] = []
        for entry in self._entries():
            if any(entry.matches(p) for p in patterns) and entry.key not in found:
                found.append(entry.key)
        return found

    def check(self, names: Sequence[str], port: int, offered: HostKey) -> Verdict:
        """MATCH if ``offered`` is pinned for one of ``names``; CHANGED if other keys are; else UNKNOWN."""
        pinned = self.keys_for(names, port)
        if not pinned:
            return Verdict.UNKNOWN
        if any(hmac.compare_digest(k.blob, offered.blob) for k in pinned):
            return Verdict.MATCH
        return Verdict.CHANGED

    def pin(self, host: str, port: int, key: HostKey, *, replace: bool = False) -> bool:
        """Add ``key`` for ``host:port``; False if already pinned. A different key needs ``replace``."""
        name = host_pattern(host, port)
        entries = self._entries()
        existing = [e for e in entries if e.matches(name)]
        if any(e.key == key for e in existing):
            return False
        if existing and not replace:
            raise KnownHostsError(
                f"{name} already has a different pinned key; check why it changed, then pin with --replace"
            )
        try:
            old = self._path.read_bytes().decode("utf-8")
        except FileNotFoundError:
            old = ""
        kept = [line for line in old.splitlines() if not (replace and _line_names(line, name))]
        kept.append(key.line_for(name))
        atomic_write(self._path, ("\n".join(kept) + "\n").encode(), mode=0o600)
        return True


def _line_names(line: str, name: str) -> bool:
    fields = line.split()
    if len(fields) < 3 or line.lstrip().startswith("#"):
        return False
    return _Entry(tuple(fields[0].split(",")), HostKey("", b"")).matches(name)
