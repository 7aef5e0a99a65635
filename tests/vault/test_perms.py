"""Loose or foreign permissions on the state dir, store or host key are refused with the fix to run."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from hardening.perms import PermissionsError, read_private_file
from hardening.vault import KeySource, VaultPaths, open_store
from tests.vault.conftest import put

NOBODY = 65534


@pytest.mark.parametrize(
    "name,mode",
    [("credentials.store", 0o640), ("credentials.store", 0o604), ("host.key", 0o644), ("host.key", 0o660)],
)
def test_loose_file_is_refused_with_chmod(
    small_store: VaultPaths, source: KeySource, name: str, mode: int
) -> None:
    target = small_store.state_dir / name
    target.chmod(mode)
    with pytest.raises(PermissionsError, match=f"run: chmod 600 {target}"):
        open_store(small_store, source)
    target.chmod(0o600)
    open_store(small_store, source).close()


@pytest.mark.parametrize("mode", [0o750, 0o705, 0o777])
def test_loose_state_dir_is_refused_with_chmod(small_store: VaultPaths, source: KeySource, mode: int) -> None:
    small_store.state_dir.chmod(mode)
    try:
        with pytest.raises(PermissionsError, match=f"chmod 700 {small_store.state_dir}"):
            open_store(small_store, source)
    finally:
        small_store.state_dir.chmod(0o700)


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
@pytest.mark.parametrize("name", ["credentials.store", "host.key", ""])
def test_foreign_owner_is_refused_with_chown(small_store: VaultPaths, source: KeySource, name: str) -> None:
    target = small_store.state_dir / name if name else small_store.state_dir
    os.chown(target, NOBODY, -1)
    try:
        # A directory is handed over whole (chown -R USER: DIR); either way running as the owner is named.
        recipe = r"run: chown (-R \S+: )?(\S+ )?" + re.escape(str(target)) + r" .*runuser -u nobody -- midbox"
        with pytest.raises(PermissionsError, match=recipe):
            open_store(small_store, source)
    finally:
        os.chown(target, os.geteuid(), -1)


def test_symlinked_store_is_refused(tmp_path: Path, small_store: VaultPaths, source: KeySource) -> None:
    real = tmp_path / "elsewhere.store"
    small_store.store.rename(real)
    small_store.store.symlink_to(real)
    with pytest.raises(PermissionsError, match="symlink"):
        open_store(small_store, source)


def test_new_store_and_key_are_private(tmp_path: Path) -> None:
    paths = VaultPaths(tmp_path / "fresh" / "state")
    put(paths, KeySource(paths.host_key), "web")
    assert paths.state_dir.stat().st_mode & 0o777 == 0o700
    for f in paths.state_dir.iterdir():
        assert f.stat().st_mode & 0o777 == 0o600, f.name


def test_oversized_file_is_refused(tmp_path: Path) -> None:
    f = tmp_path / "big"
    f.write_bytes(bytes(100))
    f.chmod(0o600)
    with pytest.raises(PermissionsError, match="more than the 99 allowed"):
        read_private_file(f, 99)
    assert read_private_file(f, 100) == bytes(100)


def test_passphrase_file_one_line_ending_dropped_and_private(tmp_path: Path) -> None:
    from hardening.vault import VaultInputError, read_passphrase_file

    f = tmp_path / "pw"
    for content, want in (
        (b"pass word\n", b"pass word"),
        (b"pw\r\n", b"pw"),
        (b"pw\n\n", b"pw\n"),
        (b"pw", b"pw"),
    ):
        f.write_bytes(content)
        f.chmod(0o600)
        assert read_passphrase_file(f).reveal() == want
    f.write_bytes(b"\n")
    with pytest.raises(VaultInputError):
        read_passphrase_file(f)
    f.write_bytes(b"pw\n")
    f.chmod(0o640)
    with pytest.raises(PermissionsError, match=f"chmod 600 {f}"):
        read_passphrase_file(f)
