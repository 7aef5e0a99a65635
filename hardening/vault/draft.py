"""The decrypted content of a store while ``edit_store`` holds its lock."""

from __future__ import annotations

from hardening.vault import caps
from hardening.vault.errors import VaultError, VaultMissingError
from hardening.vault.format import CREDENTIAL_TYPES, CredentialMeta
from hardening.vault.secret import Secret


class Draft:
    """The decrypted content of a store being edited. Changes are written when the block ends."""

    def __init__(self, entries: dict[str, tuple[CredentialMeta, list[Secret]]], existed: bool) -> None:
        self._entries = entries
        self.existed = existed
        self.changed = False
        self.new_data_key = False
        self.new_passphrase: Secret | None = None
        self.rewrap = False
        self.drop_passphrase = False

    def load(self, meta: CredentialMeta, secrets_: list[Secret]) -> None:
        """Fill the draft with a record of the store as it is (not a change)."""
        self._entries[meta.alias] = (meta, secrets_)

    def aliases(self) -> list[str]:
        return sorted(self._entries)

    def has(self, alias: str) -> bool:
        return alias in self._entries

    def put(self, meta: CredentialMeta, secrets_: list[Secret]) -> None:
        low, high = CREDENTIAL_TYPES[meta.type]
        if not low <= len(secrets_) <= high or any(len(s) > caps.MAX_SECRET_BYTES for s in secrets_):
            raise VaultError(
                f"type {meta.type} takes {low}-{high} secrets of at most {caps.MAX_SECRET_BYTES} bytes"
            )
        if meta.alias not in self._entries and len(self._entries) >= caps.MAX_RECORDS:
            raise VaultError(f"the store is full ({caps.MAX_RECORDS} credentials)")
        self._wipe_entry(meta.alias)
        self._entries[meta.alias] = (meta, secrets_)
        self.changed = True

    def remove(self, alias: str) -> None:
        if alias not in self._entries:
            raise VaultMissingError(
                f"credential {alias!r} is not in the store; 'midbox creds list' shows what is"
            )
        self._wipe_entry(alias)
        del self._entries[alias]
        self.changed = True

    def _wipe_entry(self, alias: str) -> None:
        for s in self._entries.get(alias, (None, []))[1]:
            s.wipe()

    def wipe(self) -> None:
        for alias in list(self._entries):
            self._wipe_entry(alias)
        self._entries.clear()

    def entries(self) -> list[tuple[CredentialMeta, list[Secret]]]:
        return [self._entries[a] for a in sorted(self._entries)]
