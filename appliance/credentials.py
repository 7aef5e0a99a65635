"""The running appliance's credential source: the encrypted store, opened once, secrets decrypted at use.

Probes get a ``StoreCredential`` handle (alias, type, user, options). Only ``secret(i)`` decrypts,
and only that one record; the plaintext buffer is zeroed as soon as the requested part is copied
out for the library that needs it. A change to the store on disk (``creds add`` while running)
is picked up at the next lookup.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

from appliance.errors import ProbeError
from appliance.interfaces import Credential, CredentialSource
from hardening.vault import (
    KeySource,
    OpenStore,
    Secret,
    SecretRedactor,
    VaultError,
    VaultMissingError,
    VaultPaths,
    open_store,
    refuse_missing_with_history,
    systemd_passphrase,
)
from hardening.vault import load_host_key as _load_host_key

log = logging.getLogger(__name__)


class StoreCredential:
    """A handle on one record. Holds no secret; ``secret(i)`` decrypts part ``i`` at the moment of use."""

    __slots__ = ("_alias", "_options", "_source", "_type", "_user")

    def __init__(
        self, source: StoreCredentials, alias: str, type_: str, user: str | None, options: Mapping[str, str]
    ) -> None:
        self._source = source
        self._alias = alias
        self._type = type_
        self._user = user
        self._options = MappingProxyType(dict(options))

    @property
    def alias(self) -> str:
        return self._alias

    @property
    def type(self) -> str:
        return self._type

    @property
    def user(self) -> str | None:
        return self._user

    @property
    def options(self) -> Mapping[str, str]:
        return self._options

    def secret(self, index: int = 0) -> bytes:
        """Part ``index`` of the secret (IndexError if the record has no such part)."""
        return self._source.reveal(self._alias, index)

    def __repr__(self) -> str:
        return f"StoreCredential(alias={self._alias!r}, type={self._type!r}, secret=***)"


class StoreCredentials:
    """``CredentialSource`` over ``credentials.store``; thread-safe (SSH probes run in threads)."""

    def __init__(self, paths: VaultPaths, source: KeySource, redactor: SecretRedactor | None = None) -> None:
        self._paths = paths
        self._source = source
        self._redactor = redactor
        self._lock = threading.Lock()
        self._store: OpenStore | None = None
        self._stamp: tuple[int, int, int] | None = (-1, -1, -1)  # nothing looked at yet
        with self._lock:
            self._reload_if_changed()

    def _reload_if_changed(self) -> OpenStore | None:
        try:
            st = os.stat(self._paths.store)
        except FileNotFoundError:
            stamp = None
        else:
            stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        if stamp == self._stamp:
            return self._store
        if self._store is not None:
            self._store.close()
            self._store = None
        self._stamp = (-1, -1, -1)
        if stamp is None:
            refuse_missing_with_history(self._paths)
            self._stamp = None
        else:
            # Every check of open_store runs again: perms, integrity, keys, rollback.
            self._store = open_store(self._paths, self._source)
            self._stamp = stamp
            log.info(
                "credential store opened: %d credentials, generation %d",
                len(self._store.credentials()),
                self._store.generation,
            )
        return self._store

    def lookup(self, alias: str) -> Credential:
        with self._lock:
            store = self._checked_store()
            try:
                meta = store.meta(alias)
            except VaultMissingError as e:
                raise ProbeError(str(e)) from e
        return StoreCredential(self, meta.alias, meta.type, meta.user, dict(meta.options))

    def reveal(self, alias: str, index: int) -> bytes:
        with self._lock:
            store = self._checked_store()
            try:
                parts = store.reveal(alias)
            except VaultMissingError as e:
                raise ProbeError(str(e)) from e
        try:
            if not 0 <= index < len(parts):
                raise IndexError(f"credential {alias!r} has no secret part {index}")
            if self._redactor is not None:
                self._redactor.register(parts[index].view())
            return parts[index].reveal()
        finally:
            for part in parts:
                part.wipe()

    def _checked_store(self) -> OpenStore:
        try:
            store = self._reload_if_changed()
        except VaultError as e:
            raise ProbeError(f"credential store unusable: {e}") from e
        if store is None:
            raise ProbeError(
                f"no credential store at {self._paths.store}; add credentials with 'midbox creds add'"
            )
        return store

    def close(self) -> None:
        with self._lock:
            if self._store is not None:
                self._store.close()
                self._store = None
            if self._source.passphrase is not None:
                self._source.passphrase.wipe()


def open_credentials(
    state_dir: Path,
    *,
    credentials_directory: Path | None = None,
    passphrase: bytes | None = None,
    redactor: SecretRedactor | None = None,
) -> StoreCredentials:
    """Open the store for ``midbox run``; raises a ``hardening.vault.VaultError`` if it cannot be used.

    A missing store is not an error (an appliance may run HTTP/TCP jobs without credentials):
    lookups then fail with a clear message; a store this host has seen before and is now gone is.
    ``credentials_directory`` is ``$CREDENTIALS_DIRECTORY``, read by the CLI entry point; without
    ``passphrase``, its ``midbox.store-passphrase`` is used if present. ``redactor`` learns every
    secret as it is revealed.
    """
    secret = Secret(passphrase) if passphrase is not None else systemd_passphrase(credentials_directory)
    source = KeySource(
        host_key_path=VaultPaths(state_dir).host_key, credentials_dir=credentials_directory, passphrase=secret
    )
    return StoreCredentials(VaultPaths(state_dir), source, redactor)


def load_host_key(
    state_dir: Path, credentials_directory: Path | None = None, *, create: bool = False
) -> bytes:
    """The 32-byte host key (systemd credential first, then ``STATE_DIR/host.key``), for deriving other keys.

    Derive with a distinct label (``hardening.sealbox.derive_key(host_key, "outbox")``) and never use
    it directly. ``create=True`` makes a new key if none exists (first start).
    """
    source = KeySource(host_key_path=VaultPaths(state_dir).host_key, credentials_dir=credentials_directory)
    with _load_host_key(source, create=create) as key:
        return key.reveal()


def _typecheck(source: StoreCredentials) -> CredentialSource:
    return source
