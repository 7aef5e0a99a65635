"""Attacks on the store file: reading it, flipping bytes, moving records, wrong keys, rollback."""

from __future__ import annotations

import hashlib
import hmac
import struct
from pathlib import Path

import pytest

from hardening.vault import (
    CredentialMeta,
    KeySource,
    Secret,
    VaultError,
    VaultLockedError,
    VaultMissingError,
    VaultPaths,
    VaultRollbackError,
    VaultTamperedError,
    edit_store,
    keys,
    open_store,
    verify_store,
)
from hardening.vault import format as fmt
from hardening.vault.store import seal
from tests.vault.conftest import PLANTED, put


def reveal_all(paths: VaultPaths, source: KeySource) -> dict[str, list[bytes]]:
    with open_store(paths, source) as store:
        return {m.alias: [s.reveal() for s in store.reveal(m.alias)] for m in store.credentials()}


def rewrite_checksum(data: bytes) -> bytes:
    body = data[: -fmt.CHECKSUM_BYTES]
    return body + hashlib.sha256(body).digest()


def test_round_trip_and_planted_secret_never_on_disk(small_store: VaultPaths, source: KeySource) -> None:
    assert reveal_all(small_store, source) == {"web": [PLANTED], "api": [b"another-secret-value"]}
    for f in small_store.state_dir.iterdir():
        raw = f.read_bytes()
        for form in (PLANTED, PLANTED.hex().encode(), PLANTED[:8]):
            assert form not in raw, f.name
    assert small_store.store.stat().st_mode & 0o777 == 0o600
    assert small_store.host_key.stat().st_mode & 0o777 == 0o600


def test_every_flipped_byte_is_tampered(small_store: VaultPaths, source: KeySource) -> None:
    original = small_store.store.read_bytes()
    assert len(original) < 600
    for i in range(len(original)):
        damaged = bytearray(original)
        damaged[i] ^= 0x01 << (i % 8)
        small_store.store.write_bytes(bytes(damaged))
        with pytest.raises(VaultTamperedError, match="tampered"):
            open_store(small_store, source).close()
    small_store.store.write_bytes(original)
    assert reveal_all(small_store, source)["web"] == [PLANTED]


def test_every_flipped_byte_fails_closed_even_with_the_checksum_redone(
    small_store: VaultPaths, source: KeySource
) -> None:
    # An attacker recomputes the unkeyed checksum: the keyed checks still refuse every single change.
    original = small_store.store.read_bytes()
    for i in range(len(original) - fmt.CHECKSUM_BYTES):
        damaged = bytearray(original)
        damaged[i] ^= 0x80
        small_store.store.write_bytes(rewrite_checksum(bytes(damaged)))
        with pytest.raises((VaultTamperedError, VaultLockedError)) as info:
            with open_store(small_store, source) as store:
                verify_problems = verify_store(store)
                assert verify_problems, f"byte {i} flipped and nothing noticed"
                raise VaultTamperedError(small_store.store, "; ".join(verify_problems))
        assert "tampered" in str(info.value)


def _forge(paths: VaultPaths, source: KeySource, edit: object) -> None:
    """Rebuild the file with a valid MAC and checksum, as someone holding the data key could not."""
    data = paths.store.read_bytes()[: -fmt.CHECKSUM_BYTES - fmt.MAC_BYTES]
    header = fmt.parse_header(data + bytes(fmt.MAC_BYTES))
    records = fmt.parse_records(memoryview(data)[fmt.HEADER_BYTES :], header.count)
    records = edit(records)  # type: ignore[operator]
    host = keys.load_host_key(source)
    kek = keys.derive_kek(host, None, header.kdf, header.store_id)
    dk = keys.unwrap_data_key(kek, header, paths.store)
    out = bytearray(data[: fmt.HEADER_BYTES])
    for r in records:
        out += r.pack()
    mk = keys.mac_key(dk)
    out += hmac.new(mk.reveal(), out, hashlib.sha256).digest()
    out += hashlib.sha256(out).digest()
    paths.store.write_bytes(bytes(out))


def test_record_moved_to_another_alias_does_not_decrypt(small_store: VaultPaths, source: KeySource) -> None:
    # Even with the file MAC made good, the record's own associated data binds it to its alias.
    def rename(records: list[fmt.SealedRecord]) -> list[fmt.SealedRecord]:
        out = []
        for r in records:
            if r.meta.alias == "web":
                meta = CredentialMeta("web2", r.meta.type, r.meta.user, r.meta.options)
                r = fmt.SealedRecord(meta, meta.pack(), r.nonce, r.ciphertext)
            out.append(r)
        return out

    _forge(small_store, source, rename)
    with open_store(small_store, source) as store:
        with pytest.raises(VaultTamperedError, match="web2"):
            store.reveal("web2")
        assert store.reveal("api")[0].reveal() == b"another-secret-value"


def test_record_with_changed_type_or_user_does_not_decrypt(
    small_store: VaultPaths, source: KeySource
) -> None:
    def retype(records: list[fmt.SealedRecord]) -> list[fmt.SealedRecord]:
        out = []
        for r in records:
            if r.meta.alias == "web":
                meta = CredentialMeta("web", "http-basic", "root", ())
                r = fmt.SealedRecord(meta, meta.pack(), r.nonce, r.ciphertext)
            out.append(r)
        return out

    _forge(small_store, source, retype)
    with open_store(small_store, source) as store, pytest.raises(VaultTamperedError):
        store.reveal("web")


def test_record_copied_into_another_store_does_not_decrypt(
    tmp_path: Path, small_store: VaultPaths, source: KeySource
) -> None:
    # A second store under the same host key: its record dropped into ours fails (store id, generation).
    other_dir = tmp_path / "other"
    other_dir.mkdir(mode=0o700)
    other = VaultPaths(other_dir)
    (other_dir / "host.key").write_bytes(small_store.host_key.read_bytes())
    (other_dir / "host.key").chmod(0o600)
    put(other, KeySource(other.host_key), "web", b"attacker-chosen")
    foreign = fmt.parse_records(
        memoryview(other.store.read_bytes())[fmt.HEADER_BYTES : -fmt.MAC_BYTES - fmt.CHECKSUM_BYTES], 1
    )[0]
    _forge(small_store, source, lambda rs: [foreign if r.meta.alias == "web" else r for r in rs])
    with open_store(small_store, source) as store, pytest.raises(VaultTamperedError):
        store.reveal("web")


def test_wrong_host_key_fails_closed(small_store: VaultPaths, source: KeySource) -> None:
    small_store.host_key.write_bytes(bytes(32))
    with pytest.raises(VaultLockedError, match="host key or passphrase is wrong"):
        open_store(small_store, source)


def test_missing_host_key_is_not_recreated_for_an_existing_store(
    small_store: VaultPaths, source: KeySource
) -> None:
    small_store.host_key.unlink()
    with pytest.raises(VaultMissingError, match="host key"):
        open_store(small_store, source)
    with pytest.raises(VaultMissingError), edit_store(small_store, source, create=True):
        pass
    assert not small_store.host_key.exists()


def test_passphrase_store_wrong_or_missing_passphrase(paths: VaultPaths) -> None:
    good = KeySource(paths.host_key, passphrase=Secret(b"correct horse battery"))
    put(paths, good, "web")
    assert reveal_all(paths, good)["web"] == [PLANTED]
    with pytest.raises(VaultLockedError, match="wrong"):
        open_store(paths, KeySource(paths.host_key, passphrase=Secret(b"correct horse battery!")))
    with pytest.raises(VaultLockedError, match="needs its passphrase"):
        open_store(paths, KeySource(paths.host_key))
    # The passphrase alone is not enough either: the host key is part of the key.
    paths.host_key.write_bytes(bytes(range(32)))
    with pytest.raises(VaultLockedError):
        open_store(paths, good)


def test_header_cannot_demand_huge_argon2_memory(paths: VaultPaths) -> None:
    put(paths, KeySource(paths.host_key, passphrase=Secret(b"pw-long-enough")), "web")
    data = bytearray(paths.store.read_bytes())
    offset = struct.calcsize(">8sH16sQB16sII")
    data[offset : offset + 4] = struct.pack(">I", 64 * 1024 * 1024)
    paths.store.write_bytes(rewrite_checksum(bytes(data)))
    with pytest.raises(VaultTamperedError, match="argon2 parameters out of bounds"):
        open_store(paths, KeySource(paths.host_key, passphrase=Secret(b"pw-long-enough")))


def test_older_generation_is_refused(small_store: VaultPaths, source: KeySource) -> None:
    old = small_store.store.read_bytes()
    put(small_store, source, "third", b"third-secret")
    with open_store(small_store, source) as store:
        assert store.generation == 3
    small_store.store.write_bytes(old)
    with pytest.raises(VaultRollbackError, match="older than generation 3"):
        open_store(small_store, source)
    with pytest.raises(VaultRollbackError), edit_store(small_store, source):
        pass


def test_another_store_put_in_place_is_refused(
    tmp_path: Path, small_store: VaultPaths, source: KeySource
) -> None:
    other_dir = tmp_path / "other"
    other_dir.mkdir(mode=0o700)
    (other_dir / "host.key").write_bytes(small_store.host_key.read_bytes())
    (other_dir / "host.key").chmod(0o600)
    other = VaultPaths(other_dir)
    for i in range(5):  # a higher generation does not help
        put(other, KeySource(other.host_key), f"x{i}")
    small_store.store.write_bytes(other.store.read_bytes())
    with pytest.raises(VaultRollbackError, match="not the store this appliance recorded"):
        open_store(small_store, source)


def test_deleted_store_is_not_silently_recreated(small_store: VaultPaths, source: KeySource) -> None:
    small_store.store.unlink()
    with pytest.raises(VaultRollbackError, match="missing"):
        put(small_store, source, "new")


def test_rotate_rewrap_and_reencrypt_keep_secrets(small_store: VaultPaths, source: KeySource) -> None:
    before = small_store.store.read_bytes()
    with edit_store(small_store, source) as draft:
        draft.rewrap = draft.changed = True
    rewrapped = small_store.store.read_bytes()
    with edit_store(small_store, source) as draft:
        draft.rewrap = draft.new_data_key = draft.changed = True
    reencrypted = small_store.store.read_bytes()
    assert before[100:200] != rewrapped[100:200] != reencrypted[100:200]
    assert reveal_all(small_store, source) == {"web": [PLANTED], "api": [b"another-secret-value"]}
    # Set a passphrase, then take it off again.
    with edit_store(small_store, source) as draft:
        draft.new_passphrase, draft.changed = Secret(b"new passphrase here"), True
    with pytest.raises(VaultLockedError):
        open_store(small_store, source)
    with_pass = KeySource(small_store.host_key, passphrase=Secret(b"new passphrase here"))
    assert reveal_all(small_store, with_pass)["web"] == [PLANTED]
    with edit_store(small_store, with_pass) as draft:
        draft.drop_passphrase = draft.changed = True
    assert reveal_all(small_store, source)["web"] == [PLANTED]


def test_seal_refuses_oversized_store(paths: VaultPaths, source: KeySource) -> None:
    entries = [(CredentialMeta(f"k{i}", "ssh-key", "u"), [Secret(bytes(60_000))]) for i in range(200)]
    kdf = keys.new_kdf_params(False)
    with pytest.raises(VaultError, match="exceed"):
        seal(bytes(16), 1, kdf, Secret(bytes(32)), Secret(bytes(32)), entries)


def test_truncated_and_empty_files_are_tampered(small_store: VaultPaths, source: KeySource) -> None:
    data = small_store.store.read_bytes()
    for size in (0, 1, 10, fmt.HEADER_BYTES, len(data) - 1):
        small_store.store.write_bytes(data[:size])
        with pytest.raises(VaultTamperedError):
            open_store(small_store, source)
