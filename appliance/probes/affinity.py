"""Credential affinity: which credential last worked against a target, so it is tried first next time.

A real MID keeps this on the instance (``dscy_credentials_affinity``); midbox keeps it on the host,
since the instance never learns local aliases. It only reorders the candidates the signed config
already allows; it never adds one. Losing the file costs a few extra login attempts, nothing more, so
a damaged file is set aside with a warning instead of stopping the appliance.
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from pathlib import Path

from hardening.atomic import atomic_write
from hardening.smallfile import read_capped

log = logging.getLogger(__name__)

AFFINITY_FILE = "affinity.json"
_FORMAT = 1
_MAX_FILE_BYTES = 16_000_000

Key = tuple[str, str, int]  # (probe kind, address, port)


class CredentialAffinity:
    """Target → alias that worked, bounded, oldest forgotten first; persisted when ``path`` is given."""

    def __init__(self, path: Path | None = None, max_entries: int = 65_536) -> None:
        self._path = path
        self._max = max_entries
        self._entries: OrderedDict[Key, str] = OrderedDict()
        if path is not None:
            self._load(path)

    def get(self, probe: str, address: str, port: int) -> str | None:
        return self._entries.get((probe, address, port))

    def remember(self, probe: str, address: str, port: int, alias: str) -> None:
        key = (probe, address, port)
        if self._entries.get(key) == alias:
            self._entries.move_to_end(key)
            return
        self._entries[key] = alias
        self._entries.move_to_end(key)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)
        self._save()

    def forget(self, probe: str, address: str, port: int) -> None:
        if self._entries.pop((probe, address, port), None) is not None:
            self._save()

    def __len__(self) -> int:
        return len(self._entries)

    def _save(self) -> None:
        if self._path is None:
            return
        body = {"format": _FORMAT, "entries": [[*k, v] for k, v in self._entries.items()]}
        try:
            atomic_write(self._path, json.dumps(body, separators=(",", ":")).encode())
        except OSError as e:
            # Affinity is an optimisation: a full disk must not fail the probe that just worked.
            log.warning("could not save credential affinity to %s: %s", self._path, e.strerror or e)

    def _load(self, path: Path) -> None:
        try:
            data = read_capped(path, _MAX_FILE_BYTES)
        except FileNotFoundError:
            return
        except OSError as e:
            log.warning("credential affinity %s unreadable (%s); starting without it", path, e.strerror or e)
            return
        try:
            if len(data) > _MAX_FILE_BYTES:
                raise ValueError("too large")
            body = json.loads(data)
            if not isinstance(body, dict) or body.get("format") != _FORMAT:
                raise ValueError("unknown format")
            for item in body.get("entries", []):
                probe, address, port, alias = item
                if not all(isinstance(x, str) for x in (probe, address, alias)) or not isinstance(port, int):
                    raise ValueError("bad entry")
                self._entries[(probe, address, port)] = alias
        except (ValueError, TypeError, UnicodeDecodeError):
            self._entries.clear()
            log.warning(
                "credential affinity %s is damaged; ignoring it (rewritten when a credential works)", path
            )
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)
