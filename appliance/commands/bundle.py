"""``midbox bundle verify``: check an offline release bundle before installing it."""

from __future__ import annotations

import argparse
from pathlib import Path

from appliance.commands.common import CliEnv, add_leaf, emit_json
from appliance.errors import UsageError


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:  # type: ignore[type-arg]
    group = sub.add_parser("bundle", help="offline release bundles", description="offline release bundles")
    leaves = group.add_subparsers(dest="bundle_command", metavar="COMMAND", required=True)
    verify = add_leaf(
        leaves,
        "verify",
        common,
        _verify,
        "check a release bundle's signature and every file's hash, offline",
    )
    verify.add_argument("bundle", type=Path, help="the .tar.gz bundle, or the folder it was unpacked to")
    verify.add_argument("--pubkey", type=Path, required=True, help="the release public key (minisign format)")


def _verify(args: argparse.Namespace, env: CliEnv) -> int:
    from appliance import limits
    from hardening.release import ReleaseLimits, parse_public_key, verify_bundle
    from hardening.signing.keys import MAX_KEY_FILE_BYTES
    from hardening.smallfile import read_capped

    bundle: Path = args.bundle
    pubkey: Path = args.pubkey
    if not bundle.exists():
        raise UsageError(f"{bundle} does not exist: give the path of the downloaded bundle")
    try:
        key_data = read_capped(pubkey, MAX_KEY_FILE_BYTES)
    except OSError as e:
        raise UsageError(f"cannot read the public key {pubkey}: {e.strerror}") from e
    key = parse_public_key(key_data)
    caps = ReleaseLimits(
        bundle_bytes=limits.MAX_BUNDLE_BYTES,
        member_bytes=limits.MAX_BUNDLE_MEMBER_BYTES,
        members=limits.MAX_BUNDLE_MEMBERS,
    )
    release = verify_bundle(bundle, key, caps)
    if env.json:
        doc = {
            "ok": True,
            "bundle": release.top,
            "key_id": release.key_id_hex,
            "trusted_comment": release.trusted_comment,
            "files": [{"name": n, "sha256": h} for n, h in release.files],
        }
        emit_json(env, doc)
    else:
        print(f"ok: {release.top} is signed by release key {release.key_id_hex}", file=env.stdout)
        print(f"trusted comment: {release.trusted_comment}", file=env.stdout)
        for name, digest in release.files:
            print(f"  {digest}  {name}", file=env.stdout)
    return 0
