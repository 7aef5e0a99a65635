"""The scope keys of an ``[[allow]]`` rule: ``commands``, ``oids``, ``methods``, ``paths`` (policy.md)."""

from __future__ import annotations

import re
from typing import Protocol

from appliance.errors import ConfigError, PayloadError
from hardening.scopes import CommandScope, PathScope, Scopes, ScopeSyntaxError

_METHOD = re.compile(r"[A-Z]{1,20}")
MAX_SCOPE_ENTRIES = 1000
# Applies to: the probe a scope key needs in the rule's 'probes'.
_PROBE_OF = {"commands": "ssh", "oids": "snmp", "methods": "http", "paths": "http"}


class _Keys(Protocol):
    def strings(self, key: str, required: bool = True) -> tuple[str, ...]: ...
    def name(self, key: str) -> str: ...
    def has(self, key: str) -> bool: ...


def parse_scopes(t: _Keys, path: str, probes: tuple[str, ...]) -> Scopes:
    """The rule's scopes; a key that is absent allows anything of its kind (as before scopes existed)."""
    present: dict[str, tuple[str, ...]] = {}
    for key, probe in _PROBE_OF.items():
        written = t.has(key)  # an empty list is written, and an error; only an absent key allows all
        values = t.strings(key, required=False)
        if not written:
            continue
        if probe not in probes:
            raise ConfigError(f"config: {path}: {key} only applies to rules that allow the {probe!r} probe")
        if not values:
            raise ConfigError(
                f"config: {t.name(key)} is empty, which would allow nothing; list what may run or remove it"
            )
        if len(values) > MAX_SCOPE_ENTRIES:
            raise ConfigError(f"config: {t.name(key)} has more than {MAX_SCOPE_ENTRIES} entries")
        present[key] = values
    commands = paths = None
    try:
        if "commands" in present:
            commands = CommandScope.parse(present["commands"])
    except ScopeSyntaxError as e:
        raise ConfigError(f"config: {t.name('commands')}: {e}") from e
    try:
        if "paths" in present:
            paths = PathScope.parse(present["paths"])
    except ScopeSyntaxError as e:
        raise ConfigError(f"config: {t.name('paths')}: {e}") from e
    oids = _oids(t, present["oids"]) if "oids" in present else None
    methods = None
    if "methods" in present:
        for m in present["methods"]:
            if not _METHOD.fullmatch(m):
                raise ConfigError(
                    f"config: {t.name('methods')}: {m[:30]!r} is not a method; write it in capitals, e.g. GET"
                )
        methods = frozenset(present["methods"])
    return Scopes(commands=commands, oids=oids, methods=methods, paths=paths)


def _oids(t: _Keys, entries: tuple[str, ...]) -> tuple[tuple[int, ...], ...]:
    # Names resolve through the compiled-in MIB table, the same one the SNMP probe reads jobs with.
    from appliance.mib.oids import resolve_oid

    out = []
    for entry in entries:
        try:
            out.append(resolve_oid(entry.strip()))
        except PayloadError as e:
            raise ConfigError(
                f"config: {t.name('oids')}: {entry[:60]!r} is not an OID or a known MIB name ({e})"
            ) from e
    return tuple(out)
