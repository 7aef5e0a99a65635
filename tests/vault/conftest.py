from __future__ import annotations

from pathlib import Path

import pytest

from hardening.vault import CredentialMeta, KeySource, Secret, VaultPaths, edit_store

PLANTED = b"Pl4nted-S3cret-7f3a9c"


@pytest.fixture
def paths(tmp_path: Path) -> VaultPaths:
    d = tmp_path / "state"
    d.mkdir(mode=0o700)
    return VaultPaths(d)


@pytest.fixture
def source(paths: VaultPaths) -> KeySource:
    return KeySource(paths.host_key)


def put(
    paths: VaultPaths,
    source: KeySource,
    alias: str,
    secret: bytes = PLANTED,
    ctype: str = "http-basic",
    user: str | None = "admin",
) -> None:
    with edit_store(paths, source, create=True) as draft:
        draft.put(CredentialMeta(alias, ctype, user), [Secret(secret)])


@pytest.fixture
def small_store(paths: VaultPaths, source: KeySource) -> VaultPaths:
    put(paths, source, "web", PLANTED)
    put(paths, source, "api", b"another-secret-value", ctype="http-bearer", user=None)
    return paths
