"""Errors of the credential vault. Messages never contain secret material."""

from __future__ import annotations

from hardening.errors import HardeningError


class VaultError(HardeningError):
    """The credential store cannot be used as asked."""


class VaultTamperedError(VaultError):
    """The store file failed a structural or cryptographic integrity check."""

    def __init__(self, path: object, detail: str) -> None:
        super().__init__(
            f"credential store {path} is tampered or corrupted ({detail}); "
            "restore it from a backup or re-create it with 'midbox creds add'"
        )


class VaultLockedError(VaultError):
    """The key-encryption key did not open the store: wrong host key or passphrase (or tampering)."""


class VaultRollbackError(VaultError):
    """The store on disk is older than one this appliance has already seen, or a different store."""


class VaultMissingError(VaultError):
    """There is no store, or the alias asked for is not in it."""


class VaultInputError(VaultError):
    """A value given to the vault (alias, type, field, secret) is not acceptable."""
