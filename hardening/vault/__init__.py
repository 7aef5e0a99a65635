"""The encrypted local credential store: secrets live only on this host, encrypted at rest.

Files in the state directory: ``credentials.store`` (the store), ``host.key`` (32 random bytes,
DPAPI-protected on Windows), ``credentials.generation`` (rollback record), ``credentials.lock``.
"""

from __future__ import annotations

from hardening.vault.draft import Draft
from hardening.vault.errors import (
    VaultError,
    VaultInputError,
    VaultLockedError,
    VaultMissingError,
    VaultRollbackError,
    VaultTamperedError,
)
from hardening.vault.format import CREDENTIAL_TYPES, CredentialMeta, validate_alias
from hardening.vault.keys import KeySource, load_host_key, read_passphrase_file, systemd_passphrase
from hardening.vault.redact import SecretRedactor
from hardening.vault.secret import Secret
from hardening.vault.store import (
    OpenStore,
    VaultPaths,
    edit_store,
    needs_passphrase,
    open_store,
    refuse_missing_with_history,
    store_exists,
    verify_store,
)

__all__ = [
    "CREDENTIAL_TYPES",
    "CredentialMeta",
    "Draft",
    "KeySource",
    "OpenStore",
    "Secret",
    "SecretRedactor",
    "VaultError",
    "VaultInputError",
    "VaultLockedError",
    "VaultMissingError",
    "VaultPaths",
    "VaultRollbackError",
    "VaultTamperedError",
    "edit_store",
    "load_host_key",
    "needs_passphrase",
    "open_store",
    "read_passphrase_file",
    "refuse_missing_with_history",
    "store_exists",
    "systemd_passphrase",
    "validate_alias",
    "verify_store",
]
