"""``midbox keygen``: an admin's Ed25519 signing key pair, made on the offline workstation."""

from __future__ import annotations

import argparse
import getpass
import os
from pathlib import Path
from typing import TYPE_CHECKING

from appliance.commands.common import CliEnv, add_leaf, emit_json
from appliance.errors import UsageError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

_MAX_PASSPHRASE_BYTES = 1024


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:  # type: ignore[type-arg]
    p = add_leaf(sub, "keygen", common, _keygen, "make an admin Ed25519 signing key pair")
    p.add_argument("--out", type=Path, required=True, help="directory for NAME.key and NAME.pub")
    p.add_argument("--name", default="admin", help="file name stem and the key's name in a trust root")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--no-passphrase", action="store_true", help="store the private key unencrypted")
    add_passphrase_file(group)


def add_passphrase_file(parser: argparse.ArgumentParser | argparse._MutuallyExclusiveGroup) -> None:
    parser.add_argument("--passphrase-file", type=Path, help="read the key passphrase from this file")


def read_passphrase(args: argparse.Namespace, env: CliEnv, *, confirm: bool) -> bytes:
    """From --passphrase-file (one trailing newline dropped), else from the terminal; never from argv."""
    if args.passphrase_file is not None:
        from hardening.smallfile import read_capped

        try:
            data = read_capped(args.passphrase_file, _MAX_PASSPHRASE_BYTES)
        except OSError as e:
            raise UsageError(f"cannot read passphrase file: {e.strerror}") from e
        if len(data) > _MAX_PASSPHRASE_BYTES:
            raise UsageError(f"passphrase file is longer than {_MAX_PASSPHRASE_BYTES} bytes")
        data = data[:-1] if data.endswith(b"\n") else data
        if not data:
            raise UsageError("passphrase file is empty")
        return data
    if not env.stdin.isatty():
        raise UsageError("no terminal to ask for the passphrase; pass --passphrase-file F")
    first = getpass.getpass("Key passphrase: ")
    if not first:
        raise UsageError("empty passphrase; use --no-passphrase to store the key unencrypted")
    if confirm and getpass.getpass("Repeat passphrase: ") != first:
        raise UsageError("the passphrases differ; nothing was written")
    return first.encode("utf-8")


def load_signing_key(args: argparse.Namespace, env: CliEnv) -> Ed25519PrivateKey:
    """Read --key, asking for a passphrase only if the key is encrypted."""
    from hardening.signing.keys import MAX_KEY_FILE_BYTES, is_encrypted, load_private_key
    from hardening.smallfile import read_capped

    try:
        data = read_capped(args.key, MAX_KEY_FILE_BYTES)
    except OSError as e:
        raise UsageError(f"cannot read key {args.key}: {e.strerror}") from e
    passphrase = read_passphrase(args, env, confirm=False) if is_encrypted(data) else None
    return load_private_key(data, passphrase)


def _keygen(args: argparse.Namespace, env: CliEnv) -> int:
    from hardening.atomic import atomic_write
    from hardening.perms import mkdir_private
    from hardening.signing.keys import generate, key_id, private_key_file, public_pem
    from hardening.signing.trust import trusted_key

    trusted_key(generate().public_key(), args.name)  # validates the name before any prompt
    priv_path = args.out / f"{args.name}.key"
    pub_path = args.out / f"{args.name}.pub"
    for p in (priv_path, pub_path):
        if p.exists():
            raise UsageError(f"{p} exists; choose another --name (keys are never overwritten)")
    passphrase = None if args.no_passphrase else read_passphrase(args, env, confirm=True)
    mkdir_private(args.out)
    key = generate()
    atomic_write(priv_path, private_key_file(key, passphrase), mode=0o600)
    atomic_write(pub_path, public_pem(key.public_key()), mode=0o644)
    if os.name == "posix":
        os.chmod(priv_path, 0o600)
    kid = key_id(key.public_key())
    if env.json:
        emit_json(
            env,
            {
                "key_id": kid,
                "private": str(priv_path),
                "public": str(pub_path),
                "encrypted": passphrase is not None,
            },
        )
    else:
        state = "encrypted" if passphrase is not None else "UNENCRYPTED"
        print(
            f"key id {kid}\nprivate key ({state}, keep offline): {priv_path}\npublic key: {pub_path}",
            file=env.stdout,
        )
    return 0
