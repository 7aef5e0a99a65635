"""build/bundle: the signed offline bundle for one platform, as a reproducible tar.gz in dist/.

    build/bundle --key release.pem [--passphrase-file F] [--binary dist/midbox-linux-x86_64]
    build/bundle --dev-key        (a throwaway key in dist/dev-release.*; never for a real release)

The bundle holds one folder midbox-VERSION-PLATFORM/ with the binary, its CycloneDX SBOM (written
by build/build), the install files and docs (on Linux also the man page and bash completion made
by midbox_build.clidoc), SHA256SUMS and SHA256SUMS.minisig (minisign format,
checked by `minisign -V` or `midbox bundle verify`). The tar is sorted, owned by 0:0, dated
SOURCE_DATE_EPOCH (from the SBOM), and gzip carries no name or time: equal inputs give equal bytes.
Needs `cryptography` (run it with the dev venv's python).
"""

from __future__ import annotations

import argparse
import datetime
import gzip
import io
import json
import os
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

from midbox_build.common import BUILD_DIR, DIST, REPO, BuildError, host_target, sha256_file

FILES_DIR = BUILD_DIR / "bundle-files"
DOCS_DIR = BUILD_DIR.parent / "docs"
_EXECUTABLE = {"midbox", "midbox.exe", "install.sh"}


@dataclass(frozen=True)
class BuildFacts:
    version: str
    commit: str
    epoch: int


def facts_from_sbom(sbom: Path) -> BuildFacts:
    doc = json.loads(sbom.read_text(encoding="utf-8"))
    comp = doc["metadata"]["component"]
    props = {p["name"]: p["value"] for p in comp.get("properties", [])}
    stamp = datetime.datetime.strptime(doc["metadata"]["timestamp"], "%Y-%m-%dT%H:%M:%SZ")
    epoch = int(stamp.replace(tzinfo=datetime.UTC).timestamp())
    return BuildFacts(comp["version"], props["midbox:source-commit"], epoch)


def bundle_files(binary: Path, platform: str) -> dict[str, bytes]:
    os_name = platform.split("-", 1)[0]
    sbom = binary.with_name(binary.name + ".cdx.json")
    if not sbom.is_file():
        raise BuildError(f"{sbom.name} is missing: bundle a binary made by build/build")
    files = {
        "midbox.exe" if os_name == "windows" else "midbox": binary.read_bytes(),
        "midbox.cdx.json": sbom.read_bytes(),
        "INSTALL.md": (FILES_DIR / "INSTALL.md").read_bytes(),
    }
    for f in sorted((FILES_DIR / os_name).iterdir()):
        files[f.name] = f.read_bytes()
    # The reference docs, flat beside INSTALL.md (a bundle holds one folder); their links are relative.
    for f in sorted(DOCS_DIR.glob("*.md")):
        files[f.name] = f.read_bytes()
    if os_name == "linux":
        # midbox.1 and midbox.bash-completion, made from the CLI of this checkout (the binary's source).
        from appliance import __version__
        from appliance.cli import build_parser
        from midbox_build.clidoc import generated

        files.update(generated(build_parser(), __version__))
    return files


def make_tar_gz(top: str, files: dict[str, bytes], epoch: int) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        entries = [(top, None), *((f"{top}/{n}", files[n]) for n in sorted(files))]
        for name, data in entries:
            info = tarfile.TarInfo(name)
            info.mtime = epoch
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            if data is None:
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                tar.addfile(info)
            else:
                info.size = len(data)
                info.mode = 0o755 if name.rsplit("/", 1)[1] in _EXECUTABLE else 0o644
                tar.addfile(info, io.BytesIO(data))
    out = io.BytesIO()
    # filename="" and mtime=0: no name or time in the gzip header.
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0, compresslevel=9) as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


def _load_key(args: argparse.Namespace) -> object:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from hardening.atomic import atomic_write
    from hardening.release import public_key_file

    if args.dev_key:
        key_path, pub_path = DIST / "dev-release.key", DIST / "dev-release.pub"
        DIST.mkdir(exist_ok=True)
        if not key_path.exists():
            new = Ed25519PrivateKey.generate()
            pem = new.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
            atomic_write(key_path, pem, 0o600)
            atomic_write(pub_path, public_key_file(new.public_key()), 0o644)
        print(f"bundle: WARNING: signed with the throwaway key {pub_path}; not a release", file=sys.stderr)
        args.key = key_path
    if args.key is None:
        raise BuildError("give --key RELEASE_KEY.pem (or --dev-key for a test bundle)")
    password = None
    if args.passphrase_file is not None:
        password = args.passphrase_file.read_bytes().rstrip(b"\r\n")
    try:
        key = serialization.load_pem_private_key(args.key.read_bytes(), password=password)
    except (ValueError, TypeError) as e:
        raise BuildError(f"cannot load the release key {args.key}: wrong passphrase or not a PEM key") from e
    if not isinstance(key, Ed25519PrivateKey):
        raise BuildError("the release key must be an Ed25519 key")
    return key


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="build/bundle", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--binary", type=Path, help="default dist/midbox-<os>-<arch>[.exe]")
    p.add_argument("--platform", help="linux-x86_64 or windows-x86_64 (default: from the binary's name)")
    p.add_argument("--key", type=Path, help="release signing key: Ed25519 private key, PEM (PKCS#8)")
    p.add_argument("--passphrase-file", type=Path, help="file holding the key's passphrase")
    p.add_argument("--dev-key", action="store_true", help="sign with a throwaway key in dist/ (tests only)")
    p.add_argument("--out", type=Path, default=DIST, help="output folder (default dist/)")
    args = p.parse_args(argv)
    sys.path.insert(0, str(REPO))
    try:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        from hardening.release import SIG_NAME, SUMS_NAME, render_sums, sign
    except ImportError:
        print("bundle: needs the cryptography package: run it with the dev venv's python", file=sys.stderr)
        return 2
    try:
        binary = args.binary or DIST / host_target().binary_name
        if not binary.is_file():
            raise BuildError(f"{binary} does not exist: run build/build first")
        name = binary.name.removesuffix(".exe")
        platform = args.platform or name.removeprefix("midbox-")
        if platform not in ("linux-x86_64", "windows-x86_64"):
            raise BuildError(f"unknown platform {platform!r}: give --platform")
        facts = facts_from_sbom(binary.with_name(binary.name + ".cdx.json"))
        key = _load_key(args)
        assert isinstance(key, Ed25519PrivateKey)
        files = bundle_files(binary, platform)
        sums = render_sums({n: _sha256(d) for n, d in files.items()})
        release = f"midbox {facts.version} {platform} commit {facts.commit}"
        comment = f"timestamp:{facts.epoch}\tfile:{SUMS_NAME}\t{release}"
        files[SUMS_NAME] = sums
        files[SIG_NAME] = sign(sums, key, comment)
        top = f"midbox-{facts.version}-{platform}"
        args.out.mkdir(parents=True, exist_ok=True)
        out = args.out / f"{top}.tar.gz"
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_bytes(make_tar_gz(top, files, facts.epoch))
        os.replace(tmp, out)
    except BuildError as e:
        print(f"bundle: {e}", file=sys.stderr)
        return 1
    print(f"{sha256_file(out)}  {out.name}")
    return 0


def _sha256(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


if __name__ == "__main__":
    sys.exit(main())
