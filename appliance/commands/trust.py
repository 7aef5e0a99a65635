"""``midbox trust``: install, show and rotate the admin keys the appliance accepts.

Appliance side: ``init`` (at enrollment), ``rotate NEWROOT``, ``show``.
Admin side (offline): ``propose`` writes an unsigned successor root, ``sign-root`` adds a signature.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from appliance.commands.common import CliEnv, add_leaf, emit_json, read_capped
from appliance.commands.keys import add_passphrase_file, load_signing_key
from appliance.errors import UsageError

if TYPE_CHECKING:
    from hardening.signing.trust import TrustedKey


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:  # type: ignore[type-arg]
    group = sub.add_parser("trust", help="the admin keys this appliance accepts")
    g = group.add_subparsers(dest="trust_command", metavar="COMMAND", required=True)
    i = add_leaf(g, "init", common, _init, "install the first trust root (refuses to overwrite one)")
    i.add_argument("--pubkey", type=Path, nargs="+", required=True, help="admin public keys (NAME.pub)")
    i.add_argument("--threshold", type=int, default=1, help="signatures a config needs (default 1)")
    i.add_argument("--name", help="pin the appliance name configs must be signed for")
    r = add_leaf(g, "rotate", common, _rotate, "install a new trust root signed by enough current keys")
    r.add_argument("newroot", type=Path)
    add_leaf(g, "show", common, _show, "print the installed trust root and the pinned versions")
    p = add_leaf(g, "propose", common, _propose, "admin side: write an unsigned successor of a trust root")
    p.add_argument("--current", type=Path, required=True, help="current trust.json (from the appliance)")
    p.add_argument("--pubkey", type=Path, nargs="+", required=True, help="all keys of the new root")
    p.add_argument("--threshold", type=int, default=1)
    p.add_argument("--out", type=Path, required=True)
    s = add_leaf(g, "sign-root", common, _sign_root, "admin side: add your signature to a proposed root")
    s.add_argument("newroot", type=Path)
    s.add_argument("--key", type=Path, required=True)
    add_passphrase_file(s)


def _read(path: Path, what: str) -> bytes:
    """A trust root or a public key: the trust root's cap is the larger, and each parser checks its own."""
    from hardening.signing.trust import MAX_TRUST_BYTES

    return read_capped(path, MAX_TRUST_BYTES, what)


def _keys(paths: list[Path]) -> list[TrustedKey]:
    from hardening.signing.keys import load_public_pem
    from hardening.signing.trust import trusted_key

    return [trusted_key(load_public_pem(_read(p, "public key"), str(p.name)), p.stem) for p in paths]


def _init(args: argparse.Namespace, env: CliEnv) -> int:
    from hardening.perms import ensure_private_dir
    from hardening.signing.rollback import install_initial_root
    from hardening.signing.trust import TrustRoot

    root = TrustRoot(1, args.threshold, tuple(_keys(args.pubkey)))
    ensure_private_dir(env.state_dir)
    install_initial_root(env.state_dir, root, args.name)
    print(
        f"trust root v1 installed: {len(root.keys)} key(s), threshold {root.threshold}; "
        f"pinned sha256 {root.sha256}",
        file=env.stdout,
    )
    return 0


def _rotate(args: argparse.Namespace, env: CliEnv) -> int:
    from hardening.signing.rollback import rotate_root

    old, new, signers = rotate_root(env.state_dir, _read(args.newroot, "new trust root"))
    removed = sorted({k.key_id for k in old.keys} - {k.key_id for k in new.keys})
    print(
        f"trust root rotated v{old.version} -> v{new.version} (signed by {len(signers)} current key(s)); "
        f"removed keys: {', '.join(removed) or 'none'}",
        file=env.stdout,
    )
    return 0


def _show(args: argparse.Namespace, env: CliEnv) -> int:
    from hardening.signing.rollback import load_trust_root

    root, state = load_trust_root(env.state_dir)
    info = {
        "version": root.version,
        "threshold": root.threshold,
        "sha256": root.sha256,
        "keys": [{"key_id": k.key_id, "name": k.name} for k in root.keys],
        "retired": list(root.retired),
        "config_version": state.config_version,
        "config_sha256": state.config_sha256,
        "appliance_name": state.appliance_name,
    }
    if env.json:
        emit_json(env, info)
        return 0
    lines = [
        f"trust root v{root.version}: threshold {root.threshold} of {len(root.keys)}, sha256 {root.sha256}"
    ]
    lines += [f"  key {k.key_id}  {k.name}" for k in root.keys]
    lines += [f"  retired {kid}" for kid in root.retired]
    lines.append(
        f"highest accepted config version: {state.config_version or 'none yet'}; "
        f"appliance name: {state.appliance_name or 'not pinned yet'}"
    )
    print("\n".join(lines), file=env.stdout)
    return 0


def _propose(args: argparse.Namespace, env: CliEnv) -> int:
    from hardening.atomic import atomic_write
    from hardening.signing.trust import parse, propose, serialize

    current, _sigs = parse(_read(args.current, "current trust root"), "current trust root")
    new = propose(current, _keys(args.pubkey), args.threshold)
    if args.out.exists():
        raise UsageError(f"{args.out} exists; choose another --out")
    atomic_write(args.out, serialize(new), mode=0o644)
    print(
        f"wrote {args.out}: trust root v{new.version}, {len(new.keys)} key(s), threshold {new.threshold}; "
        f"now {current.threshold} current admin(s) run 'midbox trust sign-root {args.out} --key KEY'",
        file=env.stdout,
    )
    return 0


def _sign_root(args: argparse.Namespace, env: CliEnv) -> int:
    from hardening.atomic import atomic_write
    from hardening.signing.trust import parse, sign_root

    data = _read(args.newroot, "new trust root")
    key = load_signing_key(args, env)
    signed = sign_root(data, key)
    atomic_write(args.newroot, signed, mode=0o644)
    count = len(parse(signed)[1])
    print(f"signed {args.newroot}; it now holds {count} signature(s)", file=env.stdout)
    return 0
