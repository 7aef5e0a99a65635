"""``midbox creds``: manage the encrypted credential store. Secrets never come from argv.

Secrets: stdin, one per line (``snmp-usm``: auth then priv pass phrase; ``ssh-key``: the key's
passphrase, if any, with the key itself read from ``--key-file``); on a terminal, a no-echo prompt.
Store passphrase (optional): ``--passphrase-file FILE`` (0600, ours), or a no-echo prompt when
stdin is a terminal; ``--ask-passphrase`` makes a new store ask for one.
"""

from __future__ import annotations

import argparse
import getpass
from pathlib import Path
from typing import TYPE_CHECKING

from appliance.commands import creds_test
from appliance.commands.common import CliEnv, add_leaf, emit_json
from appliance.credtypes import (
    SNMP_AUTH_PROTOCOLS,
    SNMP_DEFAULT_AUTH,
    SNMP_DEFAULT_PRIV,
    SNMP_PRIV_PROTOCOLS,
    TYPES,
)
from appliance.errors import UsageError

if TYPE_CHECKING:
    from hardening.vault import KeySource, Secret, VaultPaths

_NEEDS_USER = {"ssh-password", "ssh-key", "snmp-usm", "http-basic"}
_PROMPTS = {
    "ssh-password": ("Password",),
    "ssh-key": ("Key passphrase (empty if none)",),
    "snmp-community": ("Community",),
    "snmp-usm": ("Auth pass phrase", "Priv pass phrase"),
    "http-basic": ("Password",),
    "http-bearer": ("Bearer token",),
}
MAX_STDIN_CHARS = 70_000


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:  # type: ignore[type-arg]
    creds = sub.add_parser("creds", help="manage the encrypted credential store")
    creds_sub = creds.add_subparsers(dest="creds_command", metavar="COMMAND", required=True)
    add = add_leaf(
        creds_sub, "add", common, _add, "add or replace a credential (secret from stdin or a prompt)"
    )
    add.add_argument("alias", metavar="ALIAS")
    add.add_argument("--type", required=True, choices=TYPES)
    add.add_argument("--user", help="user name (ssh-*, http-basic, snmp-usm)")
    auth, priv = f"snmp-usm (default {SNMP_DEFAULT_AUTH})", f"snmp-usm (default {SNMP_DEFAULT_PRIV})"
    add.add_argument("--auth-protocol", choices=SNMP_AUTH_PROTOCOLS, help=auth)
    add.add_argument("--priv-protocol", choices=SNMP_PRIV_PROTOCOLS, help=priv)
    add.add_argument(
        "--snmp-version",
        choices=("1", "2c"),
        help="snmp-community: SNMP version (default 2c; 1 also needs snmp_v1 = true in the rule)",
    )
    add.add_argument("--key-file", type=Path, help="ssh-key: the private key file")
    add.add_argument(
        "--ask-passphrase", action="store_true", help="a new store: protect it with a passphrase too"
    )
    _passphrase_option(add)
    creds_test.register(creds_sub, common)
    lst = add_leaf(creds_sub, "list", common, _list, "list aliases, types and non-secret fields")
    _passphrase_option(lst)
    rm = add_leaf(creds_sub, "remove", common, _remove, "remove a credential")
    rm.add_argument("alias", metavar="ALIAS")
    _passphrase_option(rm)
    rot = add_leaf(creds_sub, "rotate-key", common, _rotate, "re-wrap the data key under a fresh key")
    rot.add_argument(
        "--reencrypt", action="store_true", help="also make a new data key and re-encrypt every record"
    )
    change = rot.add_mutually_exclusive_group()
    change.add_argument("--new-passphrase-file", type=Path, help="set or change the store passphrase")
    change.add_argument("--ask-new-passphrase", action="store_true", help="set or change it at a prompt")
    change.add_argument("--remove-passphrase", action="store_true", help="protect by the host key alone")
    _passphrase_option(rot)
    ver = add_leaf(creds_sub, "verify", common, _verify, "decrypt every record; exit 1 on any problem")
    _passphrase_option(ver)


def _passphrase_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--passphrase-file", type=Path, help="the store passphrase, from this 0600 file")


def _prepare(env: CliEnv) -> VaultPaths:
    from hardening.process import harden_process
    from hardening.vault import VaultPaths

    harden_process()  # before any secret is in memory
    return VaultPaths(env.state_dir)


def _credentials_dir(env: CliEnv) -> Path | None:
    value = env.environ.get("CREDENTIALS_DIRECTORY")
    return Path(value) if value else None


def _read_passphrase_file(path: Path) -> Secret:
    from hardening.vault import VaultInputError, read_passphrase_file

    try:
        return read_passphrase_file(path)
    except FileNotFoundError as e:
        raise UsageError(f"passphrase file {path} does not exist") from e
    except VaultInputError as e:
        raise UsageError(str(e)) from e


def _prompt_passphrase(env: CliEnv, label: str, *, confirm: bool) -> Secret:
    from hardening.vault import Secret

    if not env.stdin.isatty():
        raise UsageError(
            "the credential store needs a passphrase and there is no terminal; pass --passphrase-file F"
        )
    first = getpass.getpass(f"{label}: ")
    if not first:
        raise UsageError("empty passphrase")
    if confirm and getpass.getpass("Repeat: ") != first:
        raise UsageError("the passphrases differ; nothing was changed")
    return Secret(first.encode("utf-8"))


def _key_source(
    args: argparse.Namespace, env: CliEnv, paths: VaultPaths, *, new_store_asks: bool = False
) -> KeySource:
    from hardening.vault import KeySource, needs_passphrase, store_exists, systemd_passphrase

    if new_store_asks and store_exists(paths):
        raise UsageError(
            "the store exists; give it a passphrase with 'midbox creds rotate-key --ask-new-passphrase'"
        )
    if args.passphrase_file is not None:
        passphrase: Secret | None = _read_passphrase_file(args.passphrase_file)
    else:
        # The unit's credential first, as the running appliance uses it; then a prompt if one is needed.
        passphrase = systemd_passphrase(_credentials_dir(env))
        if passphrase is None and store_exists(paths) and needs_passphrase(paths):
            passphrase = _prompt_passphrase(env, "Credential store passphrase", confirm=False)
        elif passphrase is None and new_store_asks:
            passphrase = _prompt_passphrase(env, "New credential store passphrase", confirm=True)
    return KeySource(paths.host_key, credentials_dir=_credentials_dir(env), passphrase=passphrase)


def _read_secrets(args: argparse.Namespace, env: CliEnv) -> list[Secret]:
    from hardening.vault import Secret

    prompts = _PROMPTS[args.type]
    if env.stdin.isatty():
        values = []
        for label in prompts:
            first = getpass.getpass(f"{label} for {args.alias}: ")
            if args.type != "ssh-key" and getpass.getpass("Repeat: ") != first:
                raise UsageError("the two entries differ; nothing was written")
            values.append(first)
    else:
        text = env.stdin.read(MAX_STDIN_CHARS + 1)
        if len(text) > MAX_STDIN_CHARS:
            raise UsageError(f"stdin holds more than {MAX_STDIN_CHARS} characters; a secret is one line")
        values = text.split("\n")
        if values and values[-1] == "":
            values.pop()  # the newline that ends the last line
        values = [v[:-1] if v.endswith("\r") else v for v in values]
        if len(values) > len(prompts) or (args.type != "ssh-key" and len(values) < len(prompts)):
            raise UsageError(
                f"type {args.type} takes {len(prompts)} line(s) on stdin ({', '.join(prompts).lower()}), "
                f"got {len(values)}"
            )
    parts = [Secret(v.encode("utf-8")) for v in values]
    if args.type == "ssh-key":
        parts = [_read_key_file(args.key_file)] + [p for p in parts if len(p)]
    _check_secrets(args.type, args.alias, parts)
    return parts


def _read_key_file(path: Path | None) -> Secret:
    from hardening.vault import Secret
    from hardening.vault.caps import MAX_SECRET_BYTES  # the key is stored as one secret

    if path is None:
        raise UsageError("type ssh-key needs --key-file PATH (its passphrase, if any, comes on stdin)")
    from hardening.runas import as_invoker

    try:
        with as_invoker(), open(path, "rb") as fh:
            data = bytearray(fh.read(MAX_SECRET_BYTES + 1))
    except OSError as e:
        raise UsageError(f"cannot read key file {path}: {e.strerror}") from e
    if (
        len(data) > MAX_SECRET_BYTES
        or not data.lstrip().startswith(b"-----BEGIN ")
        or data.find(b"PRIVATE KEY") < 0
    ):
        raise UsageError(f"{path} is not a PEM or OpenSSH private key")
    return Secret(data)


def _check_secrets(ctype: str, alias: str, parts: list[Secret]) -> None:
    for p in parts:
        if not len(p):
            raise UsageError(f"an empty secret for {alias!r}; nothing was written")
        if 0 in p.view():
            raise UsageError(f"a secret for {alias!r} contains a NUL byte")
    if ctype == "snmp-usm" and any(len(p) < 8 for p in parts):
        raise UsageError("SNMPv3 pass phrases must be at least 8 characters (RFC 3414)")
    if ctype == "http-bearer" and not all(0x21 <= b <= 0x7E for b in parts[0].view()):
        raise UsageError("a bearer token must be visible ASCII (it goes into an HTTP header)")


def _meta(args: argparse.Namespace) -> object:
    from hardening.vault import CredentialMeta, VaultInputError

    if args.type in _NEEDS_USER and not args.user:
        raise UsageError(f"type {args.type} needs --user NAME")
    if args.type not in _NEEDS_USER and args.user:
        raise UsageError(f"type {args.type} takes no --user")
    options: list[tuple[str, str]] = []
    if args.type == "snmp-usm":
        options = [
            ("auth_protocol", args.auth_protocol or SNMP_DEFAULT_AUTH),
            ("priv_protocol", args.priv_protocol or SNMP_DEFAULT_PRIV),
        ]
    elif args.auth_protocol or args.priv_protocol:
        raise UsageError("--auth-protocol/--priv-protocol are for type snmp-usm only")
    if args.snmp_version is not None and args.type != "snmp-community":
        raise UsageError("--snmp-version is for type snmp-community only (snmp-usm is always v3)")
    if args.snmp_version == "1":
        options = [("version", "1")]
    if args.key_file is not None and args.type != "ssh-key":
        raise UsageError("--key-file is for type ssh-key only")
    try:
        return CredentialMeta(args.alias, args.type, args.user, tuple(options))
    except VaultInputError as e:
        raise UsageError(str(e)) from e


def _add(args: argparse.Namespace, env: CliEnv) -> int:
    from hardening.vault import CredentialMeta, edit_store

    paths = _prepare(env)
    meta = _meta(args)
    assert isinstance(meta, CredentialMeta)
    source = _key_source(args, env, paths, new_store_asks=args.ask_passphrase)
    parts = _read_secrets(args, env)
    with edit_store(paths, source, create=True) as draft:
        replaced = draft.has(meta.alias)
        draft.put(meta, parts)
    word = "replaced" if replaced else "added"
    if env.json:
        emit_json(env, {"alias": meta.alias, "type": meta.type, "result": word})
    else:
        print(f"{word} {meta.alias} ({meta.type})", file=env.stdout)
    return 0


def _list(args: argparse.Namespace, env: CliEnv) -> int:
    from hardening.vault import open_store, refuse_missing_with_history, store_exists

    paths = _prepare(env)
    if not store_exists(paths):
        refuse_missing_with_history(paths)
        rows: list[dict[str, object]] = []
    else:
        with open_store(paths, _key_source(args, env, paths)) as store:
            rows = [
                {"alias": m.alias, "type": m.type, "user": m.user, "options": dict(m.options)}
                for m in store.credentials()
            ]
    if env.json:
        emit_json(env, rows)
        return 0
    if not rows:
        print("no credentials (add one with 'midbox creds add ALIAS --type TYPE')", file=env.stdout)
    for r in rows:
        opts = " ".join(f"{k}={v}" for k, v in dict(r["options"]).items())  # type: ignore[call-overload]
        user = f" user={r['user']}" if r["user"] else ""
        print(f"{r['alias']}\t{r['type']}{user}{' ' + opts if opts else ''}", file=env.stdout)
    return 0


def _remove(args: argparse.Namespace, env: CliEnv) -> int:
    from hardening.vault import edit_store

    paths = _prepare(env)
    with edit_store(paths, _key_source(args, env, paths)) as draft:
        draft.remove(args.alias)
    print(f"removed {args.alias}", file=env.stdout)
    return 0


def _rotate(args: argparse.Namespace, env: CliEnv) -> int:
    from hardening.vault import edit_store

    paths = _prepare(env)
    source = _key_source(args, env, paths)
    with edit_store(paths, source) as draft:
        draft.rewrap = True
        draft.new_data_key = bool(args.reencrypt)
        if args.new_passphrase_file is not None:
            draft.new_passphrase = _read_passphrase_file(args.new_passphrase_file)
        elif args.ask_new_passphrase:
            draft.new_passphrase = _prompt_passphrase(env, "New credential store passphrase", confirm=True)
        draft.drop_passphrase = bool(args.remove_passphrase)
        draft.changed = True
        count = len(draft.aliases())
    what = "new data key, every record re-encrypted" if args.reencrypt else "data key re-wrapped"
    print(f"rotated: {what} ({count} credentials)", file=env.stdout)
    return 0


def _verify(args: argparse.Namespace, env: CliEnv) -> int:
    from hardening.vault import VaultError, open_store, verify_store

    paths = _prepare(env)
    try:
        with open_store(paths, _key_source(args, env, paths)) as store:
            problems = verify_store(store)
            count, generation = len(store.credentials()), store.generation
    except VaultError as e:
        problems, count, generation = [str(e)], 0, 0
    if env.json:
        emit_json(
            env, {"ok": not problems, "credentials": count, "generation": generation, "problems": problems}
        )
    else:
        for p in problems:
            print(f"problem: {p}", file=env.stdout)
        if not problems:
            print(f"ok: {count} credentials decrypt, generation {generation}", file=env.stdout)
    return 1 if problems else 0
