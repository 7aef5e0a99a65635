"""``midbox audit verify|show|checkpoint|pubkey``: check, read and anchor the audit log."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from appliance.commands.common import CliEnv, add_leaf, emit_json, read_capped
from appliance.errors import EXIT_CHECK_FAILED, UsageError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


def _read_capped(path: Path, cap: int, what: str) -> bytes:
    data = read_capped(path, cap, what)
    if len(data) > cap:
        raise UsageError(f"{what} {path} is larger than {cap} bytes; it is not a {what}")
    return data


def _public_key(args: argparse.Namespace, env: CliEnv) -> Ed25519PublicKey:
    from hardening.audit import load_public_key
    from hardening.audit.signing import load_signing_key
    from hardening.signing.keys import MAX_KEY_FILE_BYTES

    if args.pubkey is not None:
        return load_public_key(_read_capped(args.pubkey, MAX_KEY_FILE_BYTES, "public key"))
    # Without --pubkey, trust the key on this host: fine for a routine check, not against its root.
    print(
        "midbox: checking checkpoints against the key on this host; pass --pubkey with a copy kept "
        "elsewhere to rule out a replaced key",
        file=env.stderr,
    )
    return load_signing_key(env.state_dir).public_key()


def _verify(args: argparse.Namespace, env: CliEnv) -> int:
    from hardening.audit import audit_dir, parse_checkpoint_xml, verify_checkpoint, verify_log
    from hardening.audit.checkpoint import MAX_CHECKPOINT_BYTES

    checkpoints = []
    if args.checkpoint:
        key = _public_key(args, env)
        for path in args.checkpoint:
            unverified = parse_checkpoint_xml(_read_capped(path, MAX_CHECKPOINT_BYTES, "checkpoint"))
            checkpoints.append(verify_checkpoint(unverified, key))
    seal_key = None
    if args.seal_key is not None:
        from hardening.audit.seal import parse_verification_key

        seal_key = parse_verification_key(_read_capped(args.seal_key, 256, "seal key"))
    # split: this command runs no other thread, so the later files may be checked in a forked child.
    report = verify_log(audit_dir(env.state_dir), checkpoints, seal_key=seal_key, split=True)
    if env.json:
        emit_json(
            env,
            {
                "verdict": report.verdict.value,
                "seq": report.seq,
                "detail": report.detail,
                "entries": report.entries,
                "files": report.files,
                "log_id": report.log_id,
                "head": report.head,
                "checkpoints": report.checkpoints,
                "sealed": report.sealed,
            },
        )
    else:
        print(report.line(), file=env.stdout)
    if report.ok and report.ignored_tail_bytes:
        # A crash can leave this, and the next start cuts it (audit.recovered); but so can someone
        # who cut entries after the last checkpoint: a check must not pass over it in silence.
        print(
            f"the last line of the log is torn ({report.ignored_tail_bytes} bytes): entries after the last "
            "complete one may have been cut; start the appliance once (it records the cut as "
            "audit.recovered) and verify against a checkpoint from the instance",
            file=env.stderr,
        )
        return EXIT_CHECK_FAILED
    return 0 if report.ok else EXIT_CHECK_FAILED


def _show(args: argparse.Namespace, env: CliEnv) -> int:
    import datetime as dt

    from appliance.commands.audit_table import HEADERS, format_run, table_row
    from hardening.audit import AuditValueError, audit_dir
    from hardening.audit.show import RunFilter, iter_runs, parse_since

    try:
        since = parse_since(args.since, dt.datetime.now(dt.UTC)) if args.since else None
    except AuditValueError as e:
        raise UsageError(str(e)) from e
    runs = iter_runs(audit_dir(env.state_dir), RunFilter(job=args.job, target=args.target, since=since))
    if not env.json:
        print(table_row(HEADERS, args.wide), file=env.stdout)
    for run in runs:
        if env.json:
            emit_json(env, run.as_dict())
        else:
            print(format_run(run, args.wide), file=env.stdout)
    return 0


def _checkpoint(args: argparse.Namespace, env: CliEnv) -> int:
    import datetime as dt

    from hardening.atomic import atomic_write
    from hardening.audit import (
        audit_dir,
        checkpoint_xml,
        load_or_create_signing_key,
        sign_checkpoint,
        verify_log,
    )
    from hardening.utctime import format_time

    # Sign only a head this command has itself recomputed from an intact chain.
    report = verify_log(audit_dir(env.state_dir), split=True)
    if not report.ok or report.log_id is None or report.head is None:
        print(f"refusing to sign: {report.line()}", file=env.stderr)
        return EXIT_CHECK_FAILED
    key = load_or_create_signing_key(env.state_dir)
    cp = sign_checkpoint(
        key, report.log_id, report.entries, report.head, format_time(dt.datetime.now(dt.UTC), micro=True)
    )
    out: Path = args.out
    atomic_write(out, checkpoint_xml(cp), mode=0o644)
    if env.json:
        emit_json(env, {"out": str(out), "log_id": cp.log_id, "size": cp.size, "head": cp.head})
    else:
        print(f"checkpoint of {cp.size} entries (head {cp.head[:16]}...) written to {out}", file=env.stdout)
    return 0


def _pubkey(args: argparse.Namespace, env: CliEnv) -> int:
    from hardening.atomic import atomic_write
    from hardening.audit import load_or_create_signing_key, public_key_pem
    from hardening.audit.signing import key_id

    public = load_or_create_signing_key(env.state_dir).public_key()
    pem = public_key_pem(public)
    if args.out is not None:
        atomic_write(args.out, pem, mode=0o644)
        print(f"audit public key {key_id(public)} written to {args.out}", file=env.stdout)
    else:
        env.stdout.write(pem.decode("ascii"))
    return 0


def _seal_export(args: argparse.Namespace, env: CliEnv) -> int:
    from hardening.atomic import atomic_write
    from hardening.audit import audit_dir
    from hardening.audit.seal import export_verification_key

    data = export_verification_key(audit_dir(env.state_dir))
    if args.out is not None:
        atomic_write(args.out, data, mode=0o600)
        print(
            f"seal verification key written to {args.out} and erased from the log directory; "
            "keep it off this host",
            file=env.stdout,
        )
    else:
        env.stdout.write(data.decode("ascii"))
    return 0


def register(
    sub: argparse._SubParsersAction,  # type: ignore[type-arg]
    common: argparse.ArgumentParser,
) -> None:
    group = sub.add_parser("audit", help="check, read and anchor the tamper-evident audit log")
    leaves = group.add_subparsers(dest="audit_command", metavar="ACTION", required=True)

    p = add_leaf(
        leaves,
        "verify",
        common,
        _verify,
        "check the audit chain and signed checkpoints (exit 1 on any break)",
    )
    p.add_argument("--checkpoint", type=Path, action="append", default=[], metavar="FILE")
    p.add_argument(
        "--pubkey", type=Path, default=None, help="the appliance's audit public key, kept off the host"
    )
    p.add_argument(
        "--seal-key", type=Path, default=None, help="the seal verification key from 'audit seal-export'"
    )

    p = add_leaf(
        leaves,
        "show",
        common,
        _show,
        "print probe runs from the audit log, unverified (--json: one JSON line each)",
    )
    p.add_argument("--job", default=None, help="only this job (the ECC output sys_id)")
    p.add_argument("--target", default=None, help="only this target host")
    p.add_argument("--since", default=None, help="only runs since a time: 2h, 7d or 2026-11-25T06:00:00Z")
    p.add_argument("--wide", action="store_true", help="print columns whole, not cut with ~")

    p = add_leaf(leaves, "checkpoint", common, _checkpoint, "export a signed checkpoint of the intact log")
    p.add_argument("--out", type=Path, required=True, metavar="FILE")

    p = add_leaf(
        leaves, "seal-export", common, _seal_export, "print the seal verification key once and erase it here"
    )
    p.add_argument(
        "--out", type=Path, default=None, metavar="FILE", help="write it to FILE (removable media)"
    )

    p = add_leaf(leaves, "pubkey", common, _pubkey, "print or write the appliance's audit public key (PEM)")
    p.add_argument("--out", type=Path, default=None, metavar="FILE")
