"""The credential vocabulary: which types a probe can use, and the SNMP v3 protocol names.

The CLI, the alias check and the probes take it from here. The vault keeps its own table of the
same types (how many secrets each holds), because hardening imports nothing from appliance;
tests/vault/test_credtypes.py holds the two equal. The CLI does not import the vault for this, so
printing help stays cheap.
"""

from __future__ import annotations

from collections.abc import Mapping

SSH_CREDENTIAL_TYPES = ("ssh-password", "ssh-key")
SNMP_CREDENTIAL_TYPES = ("snmp-community", "snmp-usm")
HTTP_CREDENTIAL_TYPES = ("http-basic", "http-bearer")

# Which stored credential types each probe can use (the probes refuse any other type).
PROBE_TYPES: Mapping[str, frozenset[str]] = {
    "ssh": frozenset(SSH_CREDENTIAL_TYPES),
    "snmp": frozenset(SNMP_CREDENTIAL_TYPES),
    "http": frozenset(HTTP_CREDENTIAL_TYPES),
    "tcp": frozenset(),
}
TYPES = SSH_CREDENTIAL_TYPES + SNMP_CREDENTIAL_TYPES + HTTP_CREDENTIAL_TYPES

# snmp-usm options, as net-snmp spells them; the AES-192/256 variants use Blumenthal key extension.
SNMP_AUTH_PROTOCOLS = ("SHA", "SHA-224", "SHA-256", "SHA-384", "SHA-512")
SNMP_PRIV_PROTOCOLS = ("AES", "AES-192", "AES-256")
SNMP_DEFAULT_AUTH = "SHA-256"
SNMP_DEFAULT_PRIV = "AES"
