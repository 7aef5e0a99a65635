"""The last store generation this appliance saw, kept beside the store to refuse rollback.

An attacker who can replace files in the state directory could roll back both files together;
this catches the common cases (a restored backup, a copy of an old store put back) and says so.
"""

from __future__ import annotations

import re
from pathlib import Path

from hardening import atomic, perms
from hardening.vault import caps
from hardening.vault.errors import VaultRollbackError

_LINE = re.compile(rb"midbox-credentials-generation 1 ([0-9a-f]{32}) ([0-9]{1,20})\n")


def read_generation(path: Path) -> tuple[bytes, int] | None:
    try:
        raw = perms.read_private_file(path, caps.MAX_GENERATION_FILE_BYTES)
    except FileNotFoundError:
        return None
    m = _LINE.fullmatch(raw)
    if m is None:
        raise VaultRollbackError(
            f"{path} is not a midbox generation record; restore it or remove it to accept the store"
        )
    return bytes.fromhex(m.group(1).decode()), int(m.group(2))


def check_and_record(path: Path, store: Path, store_id: bytes, generation: int) -> None:
    """Refuse an older generation or another store; remember a newer one. Call with the lock held."""
    recorded = read_generation(path)
    if recorded is not None:
        rec_id, rec_gen = recorded
        if rec_id != store_id:
            raise VaultRollbackError(
                f"credential store {store} is not the store this appliance recorded "
                f"(id {store_id.hex()[:12]}, expected {rec_id.hex()[:12]}); if you replaced it on purpose, "
                f"remove {path}"
            )
        if generation < rec_gen:
            raise VaultRollbackError(
                f"credential store {store} is generation {generation}, older than generation {rec_gen} "
                "already seen here: an old copy was put back; restore the current store"
            )
        if generation == rec_gen:
            return
    line = f"midbox-credentials-generation 1 {store_id.hex()} {generation}\n".encode()
    atomic.atomic_write(path, line, mode=0o600)
