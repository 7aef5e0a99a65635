"""``midbox hosts``: pin SSH host keys (STATE_DIR/known_hosts) and list the pins."""

from __future__ import annotations

import argparse

from appliance.commands.common import CliEnv, add_leaf, emit_json, read_capped
from appliance.errors import UsageError

KNOWN_HOSTS_FILE = "known_hosts"


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:  # type: ignore[type-arg]
    hosts = sub.add_parser("hosts", help="pin and list SSH host keys")
    hosts_sub = hosts.add_subparsers(dest="hosts_command", metavar="COMMAND", required=True)
    pin = add_leaf(hosts_sub, "pin", common, _pin, "pin an SSH host key for HOST[:PORT]")
    pin.add_argument("target", metavar="HOST[:PORT]", help="host name or address, port 22 if not given")
    pin.add_argument("pubkey_file", metavar="PUBKEY_FILE", help="OpenSSH public key file, '-' for stdin")
    pin.add_argument("--replace", action="store_true", help="replace a different key already pinned")
    add_leaf(hosts_sub, "list", common, _list, "list pinned SSH host keys")


def split_target(text: str) -> tuple[str, int]:
    """``host``, ``host:port``, ``[v6]:port`` or a bare IPv6 address -> (host, port)."""
    text = text.strip()
    host, port_text = text, ""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise UsageError(f"target {text!r}: missing ']'")
        host, rest = text[1:end], text[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise UsageError(f"target {text!r}: expected [HOST]:PORT")
            port_text = rest[1:]
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    elif ":" in text:
        import ipaddress

        try:
            ipaddress.IPv6Address(text)
        except ValueError as e:
            raise UsageError(f"target {text!r}: write an IPv6 address with a port as [ADDR]:PORT") from e
    if not host or any(c.isspace() or c in ",*?!|#" for c in host):
        raise UsageError(f"target {text!r} is not a host name or address")
    if not port_text:
        return host, 22
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise UsageError(f"target {text!r}: port must be 1..65535")
    return host, int(port_text)


def _pin(args: argparse.Namespace, env: CliEnv) -> int:
    from pathlib import Path

    from hardening.known_hosts import KnownHosts, parse_public_key_file
    from hardening.perms import ensure_private_dir

    host, port = split_target(args.target)
    if args.pubkey_file == "-":
        data = env.stdin.read(100_000).encode("utf-8")
        source = "stdin"
    else:
        path = Path(args.pubkey_file)
        data = read_capped(path, 100_000, "public key file")
        source = path.name
    key = parse_public_key_file(data, source=source)
    ensure_private_dir(env.state_dir)
    added = KnownHosts(env.state_dir / KNOWN_HOSTS_FILE).pin(host, port, key, replace=args.replace)
    if env.json:
        emit_json(
            env,
            {
                "host": host,
                "port": port,
                "keytype": key.keytype,
                "fingerprint": key.fingerprint(),
                "added": added,
            },
        )
    else:
        verb = "pinned" if added else "already pinned"
        print(f"{verb}: {host}:{port} {key.keytype} {key.fingerprint()}", file=env.stdout)
    return 0


def _list(args: argparse.Namespace, env: CliEnv) -> int:
    from hardening.known_hosts import parse_known_hosts

    path = env.state_dir / KNOWN_HOSTS_FILE
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        data = b""
    entries = parse_known_hosts(data, source=KNOWN_HOSTS_FILE)
    if env.json:
        rows = [
            {"names": list(e.names), "keytype": e.key.keytype, "fingerprint": e.key.fingerprint()}
            for e in entries
        ]
        emit_json(env, rows)
    else:
        for e in entries:
            print(f"{','.join(e.names)} {e.key.keytype} {e.key.fingerprint()}", file=env.stdout)
    return 0
