"""One audit entry: its exact bytes, its chain hash, and strict parsing back.

The chain hash of entry n is SHA-256(DOMAIN || hash(n-1) || the entry's exact line bytes without the
newline); entry 0 chains to 32 zero bytes. Entry n stores hash(n-1) as ``prev``, so a changed byte
anywhere breaks the link to the next entry, and a checkpoint of the last hash covers the whole log.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import ipaddress
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import PurePath

from hardening.audit.errors import AuditValueError
from hardening.audit.events import FORBIDDEN_FIELD_NAMES
from hardening.utctime import format_time

DOMAIN = b"midbox.audit.entry.v1\x00"
GENESIS_PREV = bytes(32)
FORMAT = "midbox-audit-1"
MAX_DEPTH = 8

JsonValue = None | bool | int | float | str | list["JsonValue"] | dict[str, "JsonValue"]

HEX64 = re.compile(r"[0-9a-f]{64}")
_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")
# The scanner json.loads uses, called at an offset: the same grammar and values, without a copy.
# (typeshed does not declare the attribute json's own decoder sets in __init__.)
SCAN: Callable[[str, int], tuple[object, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]
_KEYS = ("seq", "time", "prev", "event", "fields")
# Everything before the fields object, exactly as encode_entry writes it (no escapes in the event).
HEAD = re.compile(
    rb'\{"seq":(0|[1-9][0-9]{0,18}),"time":"([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z)",'
    rb'"prev":"([0-9a-f]{64})","event":"([A-Za-z0-9_.:-]*)","fields":'
)
# The same pattern over the decoded line, for `audit verify`'s loop, which decodes the line for SCAN anyway.
HEAD_TEXT = re.compile(HEAD.pattern.decode("ascii"))


def chain_hash(prev: bytes, line: bytes) -> bytes:
    return hashlib.sha256(DOMAIN + prev + line).digest()


def parse_time(text: str) -> dt.datetime:
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC)


def _cut(text: str, max_chars: int) -> str:
    if len(text) <= max_chars:
        return text
    return f"{text[:max_chars]}...[+{len(text) - max_chars} chars]"


def json_safe(value: object, max_chars: int, depth: int = 0) -> JsonValue:
    """Convert ``value`` to plain JSON types, or refuse it; never repr() an unknown object."""
    # Fast path for the exact plain types that make up nearly every field (subclasses go the long way).
    if type(value) is str:
        return _cut(value, max_chars)
    if type(value) is int or type(value) is bool or value is None:
        return value
    if depth > MAX_DEPTH:
        raise AuditValueError(f"audit fields nest deeper than {MAX_DEPTH} levels")
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise AuditValueError("audit fields cannot hold NaN or infinity")
        return value
    if isinstance(value, str):
        return _cut(value, max_chars)
    if isinstance(value, enum.Enum):
        return json_safe(value.value, max_chars, depth + 1)
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise AuditValueError("audit times must be timezone-aware")
        return format_time(value, micro=True)
    if isinstance(value, PurePath | ipaddress.IPv4Address | ipaddress.IPv6Address):
        return _cut(str(value), max_chars)
    if isinstance(value, bytes | bytearray | memoryview):
        raise AuditValueError("audit fields cannot hold bytes; record their SHA-256 and length instead")
    if isinstance(value, list | tuple):
        return [json_safe(v, max_chars, depth + 1) for v in value]
    if isinstance(value, Mapping):
        out: dict[str, JsonValue] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise AuditValueError("audit field names must be strings")
            if key.lower() in FORBIDDEN_FIELD_NAMES:
                raise AuditValueError(f"audit field {key!r} looks like a secret; record an alias or a digest")
            plain = type(item) is int or type(item) is bool or item is None
            if plain or (type(item) is str and len(item) <= max_chars):
                out[key] = item
            else:
                out[key] = json_safe(item, max_chars, depth + 1)
        return out
    raise AuditValueError(f"audit fields cannot hold a {type(value).__name__}; convert it to text first")


def encode_entry(seq: int, time: str, prev: bytes, event: str, fields_json: str) -> bytes:
    """The exact line (without newline). Key order is fixed so humans read seq and time first."""
    return (
        f'{{"seq":{seq},"time":"{time}","prev":"{prev.hex()}","event":{json.dumps(event)},'
        f'"fields":{fields_json}}}'
    ).encode("ascii")


def encode_fields(fields: Mapping[str, object], max_chars: int) -> str:
    safe = json_safe(fields, max_chars)
    return json.dumps(safe, separators=(",", ":"), sort_keys=True, ensure_ascii=True, allow_nan=False)


@dataclass(frozen=True)
class Entry:
    seq: int
    time: str
    prev: bytes
    event: str
    fields: dict[str, object]
    raw: bytes

    @property
    def hash(self) -> bytes:
        """This entry's chain hash, computed from the link it records (not from what came before)."""
        return chain_hash(self.prev, self.raw)


class EntryFormatError(ValueError):
    """A line is not a well-formed audit entry."""


def parse_entry(raw: bytes) -> Entry:
    """Parse one line (without newline) strictly: exactly the five keys, each of the right shape."""
    fast = _parse_as_written(raw)
    return fast if fast is not None else _parse_strict(raw)


def _parse_as_written(raw: bytes) -> Entry | None:
    """The entry if ``raw`` has the exact shape the writer emits, else None (then the strict parse decides).

    Only lines that the strict parse would accept with the same values pass here: the head is matched
    byte for byte and the fields object is read by the same JSON scanner, so this is a shortcut
    (`audit verify` of a million entries), not a second grammar.
    """
    m = HEAD.match(raw)
    if m is None:
        return None
    fields = fields_as_written(raw, m.end())
    if fields is None:
        return None
    return Entry(
        int(m[1]),
        m[2].decode("ascii"),
        bytes.fromhex(m[3].decode("ascii")),
        m[4].decode("ascii"),
        fields,
        raw,
    )


def fields_as_written(raw: bytes, start: int) -> dict[str, object] | None:
    """The fields object that begins at ``start`` and ends the line, or None if it does not."""
    try:
        text = raw.decode("ascii")
        fields, end = SCAN(text, start)
    except (ValueError, StopIteration, RecursionError):
        return None
    if end != len(text) - 1 or text[end] != "}" or type(fields) is not dict:
        return None
    return fields


def _parse_strict(raw: bytes) -> Entry:
    try:
        # The writer emits ASCII only, so any other byte is an edit.
        obj = json.loads(raw.decode("ascii"))
    except (ValueError, RecursionError) as e:  # UnicodeDecodeError is a ValueError
        raise EntryFormatError("not JSON") from e
    if not isinstance(obj, dict) or tuple(obj) != _KEYS:
        raise EntryFormatError("not an audit entry object")
    seq, time, prev, event, fields = (obj[k] for k in _KEYS)
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
        raise EntryFormatError("bad seq")
    if not isinstance(time, str) or not _TIME.fullmatch(time):
        raise EntryFormatError("bad time")
    if not isinstance(prev, str) or not HEX64.fullmatch(prev):
        raise EntryFormatError("bad prev")
    if not isinstance(event, str) or not isinstance(fields, dict):
        raise EntryFormatError("bad event or fields")
    return Entry(seq, time, bytes.fromhex(prev), event, fields, raw)
