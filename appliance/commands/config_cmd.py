"""``midbox config sign`` (admin workstation) and ``midbox config verify`` (either side)."""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

from appliance.commands.common import CliEnv, add_leaf, emit_json
from appliance.commands.keys import add_passphrase_file, load_signing_key
from appliance.errors import UsageError
from hardening.policy import AllowRule


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:  # type: ignore[type-arg]
    group = sub.add_parser("config", help="sign and verify config files")
    gsub = group.add_subparsers(dest="config_command", metavar="COMMAND", required=True)
    s = add_leaf(gsub, "sign", common, _sign, "sign CONFIG (writes or co-signs CONFIG.sig)")
    s.add_argument("config", type=Path)
    s.add_argument("--key", type=Path, required=True, help="the admin's private key (NAME.key)")
    add_passphrase_file(s)
    s.add_argument("--not-before", help="valid from this UTC time (2027-01-01T00:00:00Z); default now")
    s.add_argument(
        "--replace",
        action="store_true",
        help="start over: drop CONFIG.sig's signatures and pin the files again (every admin signs again)",
    )
    v = add_leaf(gsub, "verify", common, _verify, "check signatures, trust, expiry, binding, version")
    v.add_argument("config", type=Path)
    v.add_argument("--trust", type=Path, help="check against this trust root file instead of the state dir's")
    v.add_argument("--name", help="the appliance name the config must be for")
    e = add_leaf(
        gsub, "example", common, _example, "print an annotated config that signs and verifies as printed"
    )
    e.add_argument("--name", required=True, help="the appliance name (mid.server.NAME)")


def _example(args: argparse.Namespace, env: CliEnv) -> int:
    from appliance.config.example import example_config
    from hardening.enroll.store import EnrollError, validate_name

    try:
        validate_name(args.name)
    except EnrollError as e:
        raise UsageError(str(e)) from e
    env.stdout.write(example_config(args.name, dt.datetime.now(dt.UTC)))
    return 0


def _sign(args: argparse.Namespace, env: CliEnv) -> int:
    from appliance.commands.config_pins import write_pins
    from appliance.config.parse import parse_config
    from appliance.config.verify import signature_path
    from appliance.limits import MAX_CONFIG_BYTES
    from hardening.atomic import atomic_write
    from hardening.signing.envelope import MAX_ENVELOPE_BYTES, parse_envelope, sign_config_bytes
    from hardening.signing.keys import key_id
    from hardening.smallfile import read_capped

    try:
        data = read_capped(args.config, MAX_CONFIG_BYTES)
    except OSError as e:
        raise UsageError(f"cannot read config {args.config}: {e.strerror}") from e
    # The admin's own file: parsed here so that a config the appliance would refuse is never signed.
    parsed = parse_config(data, args.config)
    sig_path = signature_path(args.config)
    existing = None
    if sig_path.exists() and not args.replace:
        existing = read_capped(sig_path, MAX_ENVELOPE_BYTES)
    data = write_pins(args.config, data, cosigning=existing is not None, out=env.stdout)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    not_before = _utc(args.not_before) if args.not_before else now
    if parsed.expires <= now:
        raise UsageError(f"config 'expires' ({parsed.expires:%Y-%m-%dT%H:%M:%SZ}) is in the past")
    key = load_signing_key(args, env)
    envelope = sign_config_bytes(
        data,
        key,
        appliance=parsed.appliance.names,
        version=parsed.version,
        expires=parsed.expires,
        not_before=not_before,
        existing=existing,
    )
    atomic_write(sig_path, envelope, mode=0o644)
    count = len(parse_envelope(envelope).signatures)
    print(
        f"signed {args.config} (version {parsed.version}, "
        f"appliance {', '.join(parsed.appliance.names)}) "
        f"with key {key_id(key.public_key())}; {sig_path.name} holds {count} signature(s)",
        file=env.stdout,
    )
    return 0


def _utc(text: str) -> dt.datetime:
    try:
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as e:
        raise UsageError(f"--not-before {text!r}: use 2027-01-01T00:00:00Z") from e
    if value.tzinfo is None:
        raise UsageError("--not-before needs a time zone, e.g. 2027-01-01T00:00:00Z")
    return value.astimezone(dt.UTC).replace(microsecond=0)


def _verify(args: argparse.Namespace, env: CliEnv) -> int:
    from appliance.config.verify import load_verified_config, signature_path
    from appliance.config.warnings import config_warnings
    from hardening.signing.rollback import load_trust_root
    from hardening.signing.trust import parse as parse_trust
    from hardening.utctime import format_time

    now = dt.datetime.now(dt.UTC)
    cfg = load_verified_config(
        args.config, env.state_dir, now, expected_name=args.name, commit=False, trust_file=args.trust
    )
    root = parse_trust(args.trust.read_bytes())[0] if args.trust else load_trust_root(env.state_dir)[0]
    names = {k.key_id: k.name for k in root.keys}
    signers = [{"key_id": kid, "name": names.get(kid, "?")} for kid in cfg.signers]
    allow = [
        {
            "cidr": list(a.cidrs),
            "host": list(a.hosts),
            "probes": list(a.probes),
            "ports": list(a.ports),
            "credentials": list(a.credentials),
            **_ssh_keys(a.rule),
            **({"resolves_within": [str(n) for n in a.rule.resolves_within]} if a.hosts else {}),
        }
        for a in cfg.settings.allow
    ]
    warnings = [str(w) for w in config_warnings(cfg.settings)]
    info = {
        "config": str(args.config),
        "signature": str(signature_path(args.config)),
        "appliance": cfg.appliance.name,
        **({"fleet": list(cfg.appliance.fleet)} if cfg.appliance.fleet else {}),
        "version": cfg.version,
        "expires": format_time(cfg.settings.expires),
        "sha256": cfg.sha256,
        "signers": signers,
        "threshold": root.threshold,
        "trust_root_version": root.version,
        "instance": cfg.instance.url,
        "allow": allow,
        "credential_map": {
            "ids": {k: list(v) for k, v in cfg.credential_map.ids.items()},
            "tags": {k: list(v) for k, v in cfg.credential_map.tags.items()},
        },
        "files": {f.key: {"path": f.written, "sha256": f.sha256} for f in cfg.settings.files},
        "warnings": warnings,
    }
    if env.json:
        emit_json(env, info)
        return 0
    out = [
        f"OK: {args.config} is validly signed",
        f"  appliance: {info['appliance']}   version: {cfg.version}   expires: {info['expires']}",
        *([f"  fleet: {', '.join(cfg.appliance.fleet)}"] if cfg.appliance.fleet else []),
        "  signed by: "
        + ", ".join(f"{s['name']} ({s['key_id']})" for s in signers)
        + f"   ({len(signers)} of {root.threshold} required, trust root v{root.version})",
        f"  sha256: {cfg.sha256}",
        f"  instance: {cfg.instance.url}",
        f"  allow rules: {len(allow)}" + ("" if allow else " (nothing is allowed: deny by default)"),
    ]
    for i, a in enumerate(cfg.settings.allow, start=1):
        where = ", ".join((*a.cidrs, *a.hosts))
        creds = ", ".join(a.credentials) or "none"
        ssh = "".join(f"  {k.replace('_', ' ')} {str(v).lower()}" for k, v in _ssh_keys(a.rule).items())
        ports = ",".join(a.ports)
        out.append(f"    {i}. {where}  probes {','.join(a.probes)}  ports {ports}  credentials {creds}{ssh}")
    cmap = cfg.credential_map
    if cmap.ids or cmap.tags:
        out.append(f"  credential map: {len(cmap.ids)} sys_id(s), {len(cmap.tags)} tag(s)")
        out.extend(f"    id {k} -> {', '.join(v)}" for k, v in cmap.ids.items())
        out.extend(f"    tag {k} -> {', '.join(v)}" for k, v in cmap.tags.items())
    pinned = sum(1 for f in cfg.settings.files if f.sha256)
    out.append(f"  files pinned: {pinned} of {len(cfg.settings.files)}")
    out.extend(f"  WARN: {w}" for w in warnings)
    print("\n".join(out), file=env.stdout)
    return 0


def _ssh_keys(rule: AllowRule) -> dict[str, object]:
    """The SSH-only keys of a rule (``sudo``, ``host_keys``), shown for rules that allow ssh."""
    if "ssh" not in rule.probes:
        return {}
    return {"sudo": rule.sudo, "host_keys": rule.host_keys}
