"""What the appliance takes from the host before it talks to anyone: a hardened process, a private
state dir, the host key (for the outbox seal) and the credential store."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from appliance.credentials import StoreCredentials, load_host_key, open_credentials
from hardening import keyatrest
from hardening.perms import ensure_private_dir
from hardening.process import harden_process
from hardening.sealbox import derive_key
from hardening.vault import read_passphrase_file
from hardening.vault.redact import SecretRedactor

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Host:
    credentials: StoreCredentials
    seal_key: bytes  # derived from the host key; encrypts the journal and the outbox
    key_password: bytes  # derived from the host key; opens the mTLS key at rest (hardening.keyatrest)

    def close(self) -> None:
        self.credentials.close()


def open_host(state_dir: Path, *, credentials_directory: Path | None, passphrase_file: Path | None) -> Host:
    """Harden this process, check the state dir, and open the host's secrets. Fails closed."""
    # First, before any secret is in memory: no core dumps, no ptrace by other users.
    harden_process()
    ensure_private_dir(state_dir)
    redactor = SecretRedactor()
    for handler in logging.getLogger().handlers:
        handler.addFilter(redactor)
    host_key = load_host_key(state_dir, credentials_directory, create=True)
    seal_key = derive_key(host_key, "midbox-state-seal")
    key_password = keyatrest.key_password(host_key)
    del host_key
    credentials = open_credentials(
        state_dir,
        credentials_directory=credentials_directory,
        passphrase=_read_passphrase(passphrase_file) if passphrase_file else None,
        redactor=redactor,
    )
    return Host(credentials=credentials, seal_key=seal_key, key_password=key_password)


def _read_passphrase(path: Path) -> bytes:
    # The same reader as 'midbox creds': one trailing line ending dropped, 0600 and ours required.
    with read_passphrase_file(path) as secret:
        return secret.reveal()
