"""The appliance's credential vocabulary and the vault's table name the same types."""

from __future__ import annotations

from appliance import credtypes
from hardening.vault import CREDENTIAL_TYPES


def test_the_cli_offers_exactly_the_types_the_vault_stores_in_its_order() -> None:
    assert tuple(CREDENTIAL_TYPES) == credtypes.TYPES


def test_every_stored_type_is_usable_by_exactly_one_probe() -> None:
    users = {t: [p for p, types in credtypes.PROBE_TYPES.items() if t in types] for t in CREDENTIAL_TYPES}
    assert all(len(probes) == 1 for probes in users.values()), users


def test_the_snmp_defaults_are_offered_choices() -> None:
    assert credtypes.SNMP_DEFAULT_AUTH in credtypes.SNMP_AUTH_PROTOCOLS
    assert credtypes.SNMP_DEFAULT_PRIV in credtypes.SNMP_PRIV_PROTOCOLS
