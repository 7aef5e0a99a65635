"""Open, check, edit and write ``credentials.store``.

Reading is an ordered sequence (see ``_load``); writing happens only inside ``edit_store``, which
holds the lock, bumps the generation, re-encrypts every record under fresh nonces, writes the file
atomically and then records the new generation. A crash at any point leaves the old store usable.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from hardening import atomic, perms
from hardening.vault import caps, keys
from hardening.vault.draft import Draft
from hardening.vault.errors import VaultError, VaultMissingError, VaultRollbackError, VaultTamperedError
from hardening.vault.format import (
    CHECKSUM_BYTES,
    CREDENTIAL_TYPES,
    HEADER_BYTES,
    KDF_HOST_KEY_AND_ARGON2ID,
    MAC_BYTES,
    NONCE_BYTES,
    TAG_BYTES,
    CredentialMeta,
    FormatError,
    Header,
    KdfParams,
    SealedRecord,
    pack_secrets,
    parse_header,
    parse_records,
    record_ad,
    unpack_secrets,
)
from hardening.vault.generation import check_and_record, read_generation
from hardening.vault.secret import Secret, wipe


@dataclass(frozen=True)
class VaultPaths:
    """The vault's files inside the state directory."""

    state_dir: Path

    @property
    def store(self) -> Path:
        return self.state_dir / "credentials.store"

    @property
    def host_key(self) -> Path:
        return self.state_dir / "host.key"

    @property
    def generation(self) -> Path:
        return self.state_dir / "credentials.generation"

    @property
    def lock(self) -> Path:
        return self.state_dir / "credentials.lock"


class OpenStore:
    """A store that passed every check, with its data key in memory. ``close()`` wipes the keys."""

    def __init__(self, path: Path, header: Header, records: list[SealedRecord], data_key: Secret) -> None:
        self.path = path
        self.header = header
        self._records = {r.meta.alias: r for r in records}
        self._data_key = data_key
        self.kek: Secret | None = None

    @property
    def generation(self) -> int:
        return self.header.generation

    def credentials(self) -> list[CredentialMeta]:
        return [self._records[a].meta for a in sorted(self._records)]

    def meta(self, alias: str) -> CredentialMeta:
        record = self._records.get(alias)
        if record is None:
            raise VaultMissingError(
                f"credential {alias!r} is not in the store; add it with 'midbox creds add {alias}'"
            )
        return record.meta

    def reveal(self, alias: str) -> list[Secret]:
        """Decrypt one record at the moment of use. The caller wipes the result when done."""
        self.meta(alias)
        return open_record(self._data_key, self.header, self._records[alias], self.path)

    def close(self) -> None:
        self._data_key.wipe()
        if self.kek is not None:
            self.kek.wipe()
        self._records.clear()

    def __enter__(self) -> OpenStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_record(data_key: Secret, header: Header, record: SealedRecord, path: Path) -> list[Secret]:
    ad = record_ad(header.store_id, header.generation, record.meta_bytes)
    body, tag = record.ciphertext[:-TAG_BYTES], record.ciphertext[-TAG_BYTES:]
    decryptor = Cipher(algorithms.AES(data_key.view()), modes.GCM(record.nonce, tag)).decryptor()
    decryptor.authenticate_additional_data(ad)
    # Decrypt into a buffer we can zero, not into an immutable bytes object.
    buf = bytearray(len(body) + 15)
    try:
        n = decryptor.update_into(body, buf)
        decryptor.finalize()
        parts = unpack_secrets(memoryview(buf)[:n], f"record {record.meta.alias!r}")
    except InvalidTag as e:
        raise VaultTamperedError(path, f"record {record.meta.alias!r} does not authenticate") from e
    except FormatError as e:
        raise VaultTamperedError(path, str(e)) from e
    finally:
        wipe(buf)
    low, high = CREDENTIAL_TYPES[record.meta.type]
    if not low <= len(parts) <= high:
        for p in parts:
            wipe(p)
        raise VaultTamperedError(
            path, f"record {record.meta.alias!r} has {len(parts)} secrets for type {record.meta.type}"
        )
    return [Secret(p) for p in parts]


def _load(paths: VaultPaths, source: keys.KeySource, *, holding_lock: bool) -> OpenStore:
    # 1. The state directory and the file are ours and private; read at most the cap.
    perms.check_private_dir(paths.state_dir)
    try:
        data = perms.read_private_file(paths.store, caps.MAX_STORE_BYTES)
    except FileNotFoundError:
        raise VaultMissingError(
            f"no credential store at {paths.store}; add a credential with 'midbox creds add'"
        ) from None
    # 2. The unkeyed checksum: accidental damage is reported as such, not as a wrong key. It is no
    #    defence (anyone can recompute it); steps 3-5 are.
    data = _strip_checksum(data, paths.store)
    # 3. Strict parse of the fixed header (magic, version, bounded KDF parameters).
    try:
        header = parse_header(data)
    except FormatError as e:
        raise VaultTamperedError(paths.store, str(e)) from e
    # 4. Derive the key-encryption key and unwrap the data key; the header is its associated data.
    host_key = keys.load_host_key(source)
    try:
        kek = keys.derive_kek(host_key, source.passphrase, header.kdf, header.store_id)
    finally:
        host_key.wipe()
    try:
        data_key = keys.unwrap_data_key(kek, header, paths.store)
    finally:
        if not holding_lock:
            kek.wipe()
    try:
        # 5. The whole file is authentic: no record dropped, swapped, added or edited.
        with keys.mac_key(data_key) as mk:
            expected = hmac.new(mk.reveal(), data[:-MAC_BYTES], hashlib.sha256).digest()
        if not hmac.compare_digest(expected, data[-MAC_BYTES:]):
            raise VaultTamperedError(paths.store, "file authentication code does not match")
        # 6. Records parse strictly (each one is decrypted only when used, or by verify).
        try:
            records = parse_records(memoryview(data)[HEADER_BYTES:-MAC_BYTES], header.count)
        except FormatError as e:
            raise VaultTamperedError(paths.store, str(e)) from e
        # 7. Not older than what this appliance has seen (rollback), and the same store.
        if holding_lock:
            check_and_record(paths.generation, paths.store, header.store_id, header.generation)
        else:
            with _locked(paths):
                check_and_record(paths.generation, paths.store, header.store_id, header.generation)
    except BaseException:
        data_key.wipe()
        kek.wipe()
        raise
    store = OpenStore(paths.store, header, records, data_key)
    # An editor keeps the key-encryption key, so an unchanged one is not derived (Argon2id) twice.
    store.kek = kek if holding_lock else None
    return store


def _strip_checksum(data: bytes, path: Path) -> bytes:
    if len(data) < HEADER_BYTES + MAC_BYTES + CHECKSUM_BYTES:
        raise VaultTamperedError(path, "file is shorter than an empty store")
    body, checksum = data[:-CHECKSUM_BYTES], data[-CHECKSUM_BYTES:]
    if not hmac.compare_digest(hashlib.sha256(body).digest(), checksum):
        raise VaultTamperedError(path, "checksum does not match")
    return body


def needs_passphrase(paths: VaultPaths) -> bool:
    """Whether the store on disk says it needs a passphrase, so the CLI knows to ask for one.

    Read without any key, so the answer is a hint only: a header edited to lie fails to open.
    """
    try:
        data = perms.read_private_file(paths.store, caps.MAX_STORE_BYTES)
    except FileNotFoundError:
        return False
    try:
        return parse_header(_strip_checksum(data, paths.store)).kdf.kind == KDF_HOST_KEY_AND_ARGON2ID
    except FormatError as e:
        raise VaultTamperedError(paths.store, str(e)) from e


def store_exists(paths: VaultPaths) -> bool:
    return os.path.lexists(paths.store)


def open_store(paths: VaultPaths, source: keys.KeySource) -> OpenStore:
    """Open and check the store for reading (list, verify, the running appliance)."""
    return _load(paths, source, holding_lock=False)


def verify_store(store: OpenStore) -> list[str]:
    """Decrypt every record; return one line per problem (empty when all is well)."""
    problems: list[str] = []
    for meta in store.credentials():
        try:
            for s in store.reveal(meta.alias):
                s.wipe()
        except VaultError as e:
            problems.append(str(e))
    return problems


@contextlib.contextmanager
def _locked(paths: VaultPaths) -> Iterator[None]:
    try:
        with atomic.file_lock(paths.lock, caps.LOCK_TIMEOUT_S):
            yield
    except atomic.LockTimeoutError as e:
        raise VaultError(str(e)) from e


@contextlib.contextmanager
def edit_store(paths: VaultPaths, source: keys.KeySource, *, create: bool = False) -> Iterator[Draft]:
    """Lock, load (or start) the store, let the caller change the draft, then write it durably."""
    if create:
        perms.ensure_private_dir(paths.state_dir)
    else:
        perms.check_private_dir(paths.state_dir)
    with _locked(paths):
        atomic.remove_stale_temps(paths.store)
        atomic.remove_stale_temps(paths.generation)
        atomic.remove_stale_temps(paths.host_key)  # a first writer killed while making the key
        old: OpenStore | None = None
        try:
            old = _load(paths, source, holding_lock=True)
        except VaultMissingError:
            if not create or paths.store.exists():
                raise
            refuse_missing_with_history(paths)
        draft = Draft({}, existed=old is not None)
        try:
            if old is not None:
                for meta in old.credentials():
                    draft.load(meta, old.reveal(meta.alias))
            yield draft
            if draft.changed or old is None:
                _write(paths, source, old, draft)
        finally:
            draft.wipe()
            if old is not None:
                old.close()


def refuse_missing_with_history(paths: VaultPaths) -> None:
    """A store that this appliance has seen is gone: refuse rather than silently start empty."""
    recorded = read_generation(paths.generation)
    if recorded is not None:
        raise VaultRollbackError(
            f"the credential store {paths.store} is missing, but this appliance recorded generation "
            f"{recorded[1]} of it; restore it from a backup, or remove {paths.generation} "
            "to start an empty store"
        )


def _write(paths: VaultPaths, source: keys.KeySource, old: OpenStore | None, draft: Draft) -> None:
    passphrase = source.passphrase
    if draft.new_passphrase is not None or draft.drop_passphrase:
        passphrase = draft.new_passphrase
    if old is None:
        store_id, generation = secrets.token_bytes(16), 1
        kdf = keys.new_kdf_params(passphrase is not None)
        data_key = Secret(secrets.token_bytes(32))
    else:
        store_id, generation = old.header.store_id, old.header.generation + 1
        same_kdf = not (draft.rewrap or draft.new_passphrase is not None or draft.drop_passphrase)
        kdf = old.header.kdf if same_kdf else keys.new_kdf_params(passphrase is not None)
        data_key = Secret(secrets.token_bytes(32)) if draft.new_data_key else Secret(old._data_key.view())
    if generation >= 2**64:
        raise VaultError("generation counter exhausted; re-create the store")
    try:
        if old is not None and old.kek is not None and kdf is old.header.kdf:
            kek = Secret(old.kek.view())
        else:
            with keys.load_host_key(source, create=old is None) as host_key:
                kek = keys.derive_kek(host_key, passphrase, kdf, store_id)
        with kek:
            data = seal(store_id, generation, kdf, kek, data_key, draft.entries())
    finally:
        data_key.wipe()
    # The store first, then the generation: a crash in between leaves a newer store, which is accepted.
    atomic.atomic_write(paths.store, data, mode=0o600)
    check_and_record(paths.generation, paths.store, store_id, generation)


def seal(
    store_id: bytes,
    generation: int,
    kdf: KdfParams,
    kek: Secret,
    data_key: Secret,
    entries: list[tuple[CredentialMeta, list[Secret]]],
) -> bytes:
    """Serialise a whole store: header with the wrapped data key, sealed records, file MAC."""
    blank = Header(
        store_id, generation, kdf, len(entries), keys.key_check(kek), bytes(NONCE_BYTES), bytes(48)
    )
    nonce, wrapped = keys.wrap_data_key(kek, data_key, blank.wrap_ad())
    header = Header(store_id, generation, kdf, len(entries), blank.key_check, nonce, wrapped)
    out = bytearray(header.pack())
    aead = AESGCM(data_key.reveal())
    for meta, parts in entries:
        meta_bytes = meta.pack()
        plain = pack_secrets([bytearray(p.view()) for p in parts])
        rnonce = secrets.token_bytes(NONCE_BYTES)
        try:
            ct = aead.encrypt(rnonce, plain, record_ad(store_id, generation, meta_bytes))
        finally:
            wipe(plain)
        out += SealedRecord(meta, meta_bytes, rnonce, ct).pack()
    with keys.mac_key(data_key) as mk:
        out += hmac.new(mk.reveal(), out, hashlib.sha256).digest()
    out += hashlib.sha256(out).digest()
    if len(out) > caps.MAX_STORE_BYTES:
        raise VaultError(f"the store would exceed {caps.MAX_STORE_BYTES} bytes; remove unused credentials")
    return bytes(out)
