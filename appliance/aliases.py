"""Every credential alias the signed config names exists in the store, with a type its rule can use.

Without this check a missing alias is found only when a job fails on it. Used by ``doctor`` (one
finding per problem) and ``policy explain`` (a warning under its ALLOW).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from appliance.config.model import Config
from appliance.credtypes import PROBE_TYPES


def _add_hint(alias: str, probes: frozenset[str] | tuple[str, ...]) -> str:
    usable = sorted(set().union(*(PROBE_TYPES.get(p, frozenset()) for p in probes)))
    kind = usable[0] if len(usable) == 1 else "|".join(usable) if usable else "TYPE"
    return f"add it with 'midbox creds add {alias} --type {kind}' as the service user"


def alias_problems(config: Config, types: Mapping[str, str]) -> list[str]:
    """One line per alias the config names that the store (``alias -> type``) cannot serve."""
    problems: list[str] = []
    for number, section in enumerate(config.settings.allow, start=1):
        for alias in section.credentials:
            have = types.get(alias)
            if have is None:
                problems.append(
                    f"rule {number} names credential {alias!r}, which is not in the store; "
                    f"{_add_hint(alias, section.probes)}"
                )
            elif not any(have in PROBE_TYPES.get(p, frozenset()) for p in section.probes):
                problems.append(
                    f"rule {number} names credential {alias!r}, a {have}, which none of its probes "
                    f"({', '.join(section.probes)}) can use; store a fitting type under that alias "
                    "or move it to a rule for that probe"
                )
    basic = config.instance.basic_auth_credential
    if basic is not None and types.get(basic) != "http-basic":
        problems.append(
            f"instance.basic_auth_credential {basic!r} is not an http-basic credential in the store; "
            f"add it with 'midbox creds add {basic} --type http-basic'"
        )
    return problems


def store_types(state_dir: Path, credentials_dir: Path | None) -> dict[str, str] | str:
    """``alias -> type`` from the store, or why it could not be read (never a secret)."""
    from hardening.errors import HardeningError
    from hardening.process import harden_process
    from hardening.vault import (
        KeySource,
        VaultPaths,
        needs_passphrase,
        open_store,
        store_exists,
        systemd_passphrase,
    )

    paths = VaultPaths(state_dir)
    if not store_exists(paths):
        return {}
    try:
        passphrase = systemd_passphrase(credentials_dir)
        if passphrase is None and needs_passphrase(paths):
            return "the store has an operator passphrase; check its aliases with 'midbox creds list'"
        harden_process()  # before the data key is in memory, as 'creds list' does
        source = KeySource(paths.host_key, credentials_dir=credentials_dir, passphrase=passphrase)
        with open_store(paths, source) as store:
            return {m.alias: m.type for m in store.credentials()}
    except HardeningError as e:
        return f"the credential store could not be opened: {e}"
