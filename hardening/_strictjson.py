"""Strict JSON for signed envelopes: size first, no duplicate keys, no trailing data, canonical base64.

Python's ``json`` accepts duplicate keys (last wins), NaN and trailing whitespace; a signature
format that tolerates any of these lets two readers see two different documents.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable
from typing import Any, TypeVar

from hardening.errors import HardeningError

E = TypeVar("E", bound=HardeningError)
T = TypeVar("T")

_HEX = re.compile(r"[0-9a-f]*")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate field {key!r}")
        out[key] = value
    return out


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


def loads_strict(data: bytes, max_bytes: int, what: str, error: type[E]) -> dict[str, Any]:
    """Parse one JSON object: ASCII only, at most one trailing newline, every key unique."""
    if len(data) > max_bytes:
        raise error(f"{what}: {len(data)} bytes, more than the {max_bytes} allowed")
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError as e:
        raise error(f"{what}: not ASCII text (byte {e.start})") from e
    decoder = json.JSONDecoder(object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    try:
        value, end = decoder.raw_decode(text)
    except (ValueError, RecursionError) as e:
        raise error(f"{what}: not valid JSON: {e}") from e
    if text[end:] not in ("", "\n"):
        raise error(f"{what}: trailing data after the JSON object at offset {end}")
    if not isinstance(value, dict):
        raise error(f"{what}: must be a JSON object")
    return value


def canonical(value: object) -> bytes:
    """The one byte encoding that is signed: sorted keys, no spaces, ASCII."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def b64decode_strict(text: str, what: str, error: type[E]) -> bytes:
    """Standard base64 with padding; refuses anything that does not re-encode to the same text."""
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as e:
        raise error(f"{what}: bad base64") from e
    if base64.b64encode(raw).decode("ascii") != text:
        raise error(f"{what}: bad base64 (not canonical)")
    return raw


def b64encode(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


class Fields:
    """A JSON object read by popping known keys; leftovers are an error that names the key."""

    def __init__(self, data: dict[str, Any], where: str, error: type[HardeningError]) -> None:
        self._data = dict(data)
        self._where = where
        self._error = error

    def fail(self, message: str) -> HardeningError:
        return self._error(f"{self._where}: {message}")

    def take(self, key: str, kind: type[T]) -> T:
        if key not in self._data:
            raise self.fail(f"missing field {key!r}")
        value = self._data.pop(key)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise self.fail(f"field {key!r} must be {kind.__name__}")
        return value

    def optional(self, key: str, kind: type[T]) -> T | None:
        if key not in self._data or self._data[key] is None:
            self._data.pop(key, None)
            return None
        return self.take(key, kind)

    def hex(self, key: str, length: int) -> str:
        value = self.take(key, str)
        # fullmatch: "$" would also match before a trailing newline.
        if len(value) != length or not _HEX.fullmatch(value):
            raise self.fail(f"field {key!r} must be {length} lowercase hex digits")
        return value

    def b64(self, key: str, length: int | None = None) -> bytes:
        raw = b64decode_strict(self.take(key, str), f"{self._where}: field {key!r}", self._error)
        if length is not None and len(raw) != length:
            raise self.fail(f"field {key!r} must decode to {length} bytes")
        return raw

    def each(self, key: str, max_items: int, read: Callable[[Fields], T]) -> tuple[T, ...]:
        items = self.take(key, list)
        if len(items) > max_items:
            raise self.fail(f"field {key!r} has more than {max_items} entries")
        out = []
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                raise self.fail(f"{key}[{i}] must be an object")
            sub = Fields(item, f"{self._where}.{key}[{i}]", self._error)
            out.append(read(sub))
            sub.done()
        return tuple(out)

    def done(self) -> None:
        if self._data:
            raise self.fail(f"unknown field {sorted(self._data)[0]!r}")
