"""``midbox policy explain``: a dry run of the signed allowlist for one probe, target and credential."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from appliance.commands.common import CliEnv, add_leaf, emit_json
from appliance.commands.doctor import DEFAULT_CONFIG_HELP, default_config
from appliance.errors import EXIT_CHECK_FAILED, ApplianceError, UsageError
from appliance.explain import TOPIC_KINDS, explain_job, explain_job_of

if TYPE_CHECKING:
    from appliance.config.model import Config
    from hardening.policy import IPAddress

DEFAULT_PORTS = {"ssh": 22, "snmp": 161}
# Parameters the other flags set: --param may not contradict them.
RESERVED_PARAMS = frozenset({"oid_spec_list", "url", "http_method", "credential", "port"})


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:  # type: ignore[type-arg]
    group = sub.add_parser("policy", help="inspect the signed allowlist")
    g = group.add_subparsers(dest="policy_command", metavar="COMMAND", required=True)
    e = add_leaf(g, "explain", common, _explain, "dry run of the signed policy (exit 0 allow, 1 deny)")
    e.add_argument(
        "--config", type=Path, default=None, help=f"the signed config (default {DEFAULT_CONFIG_HELP})"
    )
    e.add_argument("--topic", required=True, choices=sorted(TOPIC_KINDS))
    e.add_argument("--target", required=True, help="host name or address")
    what = e.add_mutually_exclusive_group()
    what.add_argument("--command", help="SSH command as the job sends it; checked against 'commands'")
    what.add_argument(
        "--oid",
        action="append",
        default=[],
        help="SNMP OID or MIB name read (repeatable); checked against 'oids'",
    )
    what.add_argument("--url", help="URL for RESTProbe/HTTPClient; host, port and path are checked")
    e.add_argument("--method", help="HTTP method (default GET); checked against 'methods'")
    e.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a job parameter, e.g. the value of a ${NAME} token of --command (repeatable)",
    )
    e.add_argument(
        "--script",
        action="append",
        default=[],
        metavar="NAME=FILE",
        help="the body of a ${File:NAME} script of --command, read from FILE (repeatable)",
    )
    e.add_argument("--port", type=int, help="port (default: --url, 22 ssh, 161 snmp)")
    named = e.add_mutually_exclusive_group()
    named.add_argument("--credential", help="credential alias the probe would use (midbox's own parameter)")
    named.add_argument("--credential-id", help="discovery_credentials sys_id a real probe carries")
    named.add_argument("--credential-tag", help="credential tag a real probe carries")
    e.add_argument("--trust", type=Path, help="trust root file to verify against")


def _target_port(args: argparse.Namespace, kind: str) -> tuple[str, int]:
    host: str = args.target
    port: int | None = args.port
    if args.url:
        parts = urlsplit(args.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UsageError("--url must be an http:// or https:// URL")
        host = parts.hostname
        port = port or parts.port or (443 if parts.scheme == "https" else 80)
    port = port or DEFAULT_PORTS.get(kind) or (443 if kind == "http" else None)
    if port is None:
        raise UsageError(f"--port is required for topic {args.topic}")
    if not 1 <= port <= 65535:
        raise UsageError("--port must be 1-65535")
    return host, port


def _job_params(pairs: list[str], scripts: list[str]) -> list[tuple[str, str]]:
    """--param NAME=VALUE and --script NAME=FILE as the job's parameters (a script's body is the value)."""
    from appliance.commands.common import read_capped
    from appliance.limits import MAX_PAYLOAD_BYTES

    out: list[tuple[str, str]] = []
    for flag, items in (("--param", pairs), ("--script", scripts)):
        for item in items:
            name, eq, value = item.partition("=")
            if not eq or not name or name in RESERVED_PARAMS:
                raise UsageError(
                    f"{flag} takes NAME={'FILE' if flag == '--script' else 'VALUE'} with a NAME other than "
                    f"{', '.join(sorted(RESERVED_PARAMS))} (those have their own flags); got {item[:60]!r}"
                )
            if flag == "--script":
                data = read_capped(Path(value), MAX_PAYLOAD_BYTES, "script file")
                if len(data) > MAX_PAYLOAD_BYTES:
                    raise UsageError(f"the script file {value} is larger than a job may carry")
                try:
                    value = data.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise UsageError(f"the script file {value} is not UTF-8 text; convert it first") from e
            out.append((name, value))
    return out


def _explain(args: argparse.Namespace, env: CliEnv) -> int:
    from appliance.config.verify import load_verified_config
    from appliance.probes.resolver import system_resolve

    kind = TOPIC_KINDS[args.topic]
    host, port = _target_port(args, kind)
    cfg = load_verified_config(
        args.config or default_config(env),
        env.state_dir,
        dt.datetime.now(dt.UTC),
        commit=False,
        trust_file=args.trust,
    )
    addresses = asyncio.run(system_resolve(host))
    policy = cfg.policy()
    hostname = None if host.strip("[]") in {str(a) for a in addresses} else host
    if args.method and kind != "http":
        raise UsageError("--method applies to RESTProbe and HTTPClient only")
    job = explain_job_of(
        args.topic,
        host,
        command=args.command,
        oids=args.oid,
        url=args.url,
        method=args.method,
        params=_job_params(args.param, args.script),
    )
    try:
        ask, verdicts = explain_job(
            policy, job, addresses=addresses, port=port, credential=args.credential, hostname=hostname
        )
    except ApplianceError as e:
        raise UsageError(f"the job these flags describe would be refused before any policy check: {e}") from e
    results = []
    for found in verdicts:
        d = found.decision
        entry: dict[str, object] = {
            "address": str(found.address),
            "allowed": d.allowed,
            "reason": d.reason,
            "rule": d.rule if d.allowed else None,
            "rules": [
                {
                    "rule": v.rule,
                    "line": policy.rules[v.rule - 1].line,
                    "allowed": v.allowed,
                    "reason": v.reason,
                    "scope": v.scope,
                }
                for v in found.rules
            ],
        }
        rule = policy.rule(d.rule) if d.allowed else None
        if rule is not None and kind == "ssh":
            # What the deciding rule lets an SSH job do beyond connecting: sudo, and unknown host keys.
            entry["sudo"] = rule.sudo
            entry["host_keys"] = rule.host_keys
        results.append(entry)
    allowed = all(r["allowed"] for r in results)
    tried = _tried(args, cfg, kind, addresses[0], port, hostname) if allowed and not args.credential else None
    if isinstance(tried, str):
        allowed = False
    warnings: list[str] = []
    if allowed:
        names = [args.credential] if args.credential else tried if isinstance(tried, list) else []
        warnings = _missing_aliases(cfg, names, env, kind)
    if env.json:
        emit_json(
            env,
            {
                "allowed": allowed,
                "probe": kind,
                "target": host,
                "port": port,
                "credential": args.credential,
                "config_version": cfg.version,
                "ask": {
                    "command": ask.command,
                    "oids": [".".join(map(str, o)) for o in ask.oids] if ask.oids is not None else None,
                    "method": ask.method,
                    "path": ask.path,
                },
                "addresses": results,
                "credentials_tried": tried if isinstance(tried, list) else [],
                "credential_error": tried if isinstance(tried, str) else None,
                "warnings": warnings,
            },
        )
    else:
        verdict = "ALLOW" if allowed else "DENY"
        print(
            f"{verdict}: {args.topic} ({kind}) to {host} port {port}"
            f"{' with credential ' + args.credential if args.credential else ''} "
            f"under config version {cfg.version}",
            file=env.stdout,
        )
        for r in results:
            extra = f" (sudo {str(r['sudo']).lower()}, host keys {r['host_keys']})" if "sudo" in r else ""
            print(
                f"  {r['address']}: {'allow' if r['allowed'] else 'deny'} - {r['reason']}{extra}",
                file=env.stdout,
            )
            rules = r["rules"]
            # Every rule that matches is shown when more than one does, or when the answer is no.
            if isinstance(rules, list) and (len(rules) > 1 or (rules and not r["allowed"])):
                for v in rules:
                    print(
                        f"    rule {v['rule']}{_line(v['line'])}: {'allow' if v['allowed'] else 'deny'} - "
                        f"{v['reason']}",
                        file=env.stdout,
                    )
        if not allowed and len(results) > 1:
            print("  every address of a name must be allowed", file=env.stdout)
        if isinstance(tried, list):
            print(f"  credentials tried, in order: {', '.join(tried) or 'none'}", file=env.stdout)
        elif isinstance(tried, str):
            print(f"  {tried}", file=env.stdout)
        for line in warnings:
            print(f"  WARNING: {line}", file=env.stdout)
    return 0 if allowed else EXIT_CHECK_FAILED


def _line(line: object) -> str:
    return f" (line {line})" if line else ""


def _missing_aliases(cfg: Config, names: list[str], env: CliEnv, kind: str) -> list[str]:
    """An ALLOW whose credential is not in this host's store, or cannot serve this probe, still fails
    at run time: say so."""
    from appliance.aliases import alias_problems, store_types
    from appliance.credtypes import PROBE_TYPES

    if not names:
        return []
    creds_dir = env.environ.get("CREDENTIALS_DIRECTORY")
    types = store_types(env.state_dir, Path(creds_dir) if creds_dir else None)
    if isinstance(types, str):
        return [f"credentials not checked against the store: {types}"]
    problems = [p for p in alias_problems(cfg, types) if any(repr(n) in p for n in names)]
    usable = PROBE_TYPES.get(kind, frozenset())
    for n in names:
        have = types.get(n)
        if have is not None and usable and have not in usable:
            problems.append(
                f"credential {n!r} is a {have}, which the {kind} probe cannot use "
                f"({', '.join(sorted(usable))}); store a fitting type under that alias or name another"
            )
    return problems


def _tried(
    args: argparse.Namespace, cfg: Config, kind: str, address: IPAddress, port: int, hostname: str | None
) -> list[str] | str | None:
    """The aliases a real probe would try (before the store's types and the affinity), or why none."""
    if kind not in ("ssh", "snmp"):
        return None
    policy = cfg.policy()
    try:
        named = cfg.credential_map.aliases(
            credential_id=(args.credential_id or "").lower() or None, credential_tag=args.credential_tag
        )
    except KeyError:
        section = "ids" if args.credential_id else "tags"
        return f"not mapped: add it under [credential_map.{section}] in the signed config"
    if named is None:
        named = policy.credentials_for(probe=kind, address=address, port=port, hostname=hostname)
    return [
        a
        for a in named
        if policy.check(probe=kind, address=address, port=port, credential=a, hostname=hostname).allowed
    ]
