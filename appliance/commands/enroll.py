"""``midbox enroll``: the appliance's mTLS key made on this host, its CSR, and the checked certificate.

``--name NAME`` makes the key and CSR; ``--install CERT`` checks the signed certificate (key, name,
validity, leaf profile, chain to ``--ca-file``) and puts it in place; ``--renew`` makes a new key and
CSR beside the current pair, which stays in force until ``--install`` swaps both.

Where: ``--out DIR`` (default the directory of /etc/midbox/midbox.toml), files ``appliance.key`` /
``appliance.csr`` / ``appliance.crt`` as the config's defaults expect. With ``--config CONFIG`` the
verified config's ``instance.client_key`` / ``client_cert`` say where, and its ``instance.ca_file``
is the CA for the chain check when ``--ca-file`` is not given.

The key is written encrypted under the host key of ``--state-dir`` (``hardening.keyatrest``), made
there if it is missing; ``--encrypt-key`` converts a key enrolled before that.
"""

from __future__ import annotations

import argparse
import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from appliance.commands.common import CliEnv, add_leaf, emit_json, read_capped
from appliance.commands.doctor import DEFAULT_CONFIG_HELP, default_config
from appliance.errors import UsageError

if TYPE_CHECKING:
    from hardening.enroll.store import EnrollPaths


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:  # type: ignore[type-arg]
    p = add_leaf(
        sub,
        "enroll",
        common,
        _enroll,
        "make this appliance's mTLS key and CSR; install its signed certificate",
    )
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--name", help="the appliance name (as in the config): CSR for mid.server.NAME")
    mode.add_argument("--install", type=Path, metavar="CERT", help="check and install the signed certificate")
    mode.add_argument("--renew", action="store_true", help="new key and CSR beside the current pair")
    mode.add_argument(
        "--encrypt-key",
        action="store_true",
        help="encrypt a plaintext appliance.key (enrolled before keys were) under this host's key",
    )
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--out",
        type=Path,
        help=f"directory of appliance.key/.csr/.crt (default: the folder of {DEFAULT_CONFIG_HELP})",
    )
    where.add_argument("--config", type=Path, help="take the key/cert paths and CA from this signed config")
    p.add_argument("--ca-file", type=Path, help="the CA that signs appliance certificates (for --install)")
    p.add_argument("--force", action="store_true", help="replace an existing key or pending renewal")


@dataclass(frozen=True)
class _Target:
    paths: EnrollPaths
    config_name: str | None
    config_ca: Path | None


def _key_password(env: CliEnv) -> bytes:
    """The mTLS key's password, from the host key of the state dir (made there on first use)."""
    from appliance.credentials import load_host_key
    from hardening.keyatrest import key_password
    from hardening.perms import ensure_private_dir
    from hardening.runas import acting_as, state_owner

    credentials = env.environ.get("CREDENTIALS_DIRECTORY")
    # Root enrolling for the service user: the host key is the service user's, made as that user.
    with acting_as(state_owner(env.state_dir)):
        ensure_private_dir(env.state_dir)
        host_key = load_host_key(env.state_dir, Path(credentials) if credentials else None, create=True)
    return key_password(host_key)


def _target(args: argparse.Namespace, env: CliEnv) -> _Target:
    from hardening.enroll.store import EnrollPaths

    password = _key_password(env)
    if args.config is None:
        return _Target(EnrollPaths.in_dir(args.out or default_config(env).parent, password), None, None)
    from appliance.config.verify import load_verified_config

    config = load_verified_config(args.config, env.state_dir, dt.datetime.now(dt.UTC), commit=False)
    inst = config.instance
    if inst.client_key is None or inst.client_cert is None:
        raise UsageError(
            "the config has no instance.client_cert/client_key (it uses basic auth); use --out DIR"
        )
    return _Target(
        EnrollPaths(inst.client_key, inst.client_cert, password), config.appliance.name, inst.ca_file
    )


def _enroll(args: argparse.Namespace, env: CliEnv) -> int:
    from hardening.enroll.store import finish_interrupted_swap

    if args.ca_file is not None and args.install is None:
        raise UsageError("--ca-file goes with --install")
    target = _target(args, env)
    finished = finish_interrupted_swap(target.paths)
    if finished:
        print(f"midbox: an interrupted renewal was completed first: {finished}", file=env.stderr)
    if args.install is not None:
        return _install(args, env, target)
    if args.encrypt_key:
        return _encrypt_key(env, target)
    return _make_key(args, env, target)


def _encrypt_key(env: CliEnv, target: _Target) -> int:
    from hardening.keyatrest import encrypt_in_place

    paths = target.paths
    assert paths.key_password is not None  # _target always derives it
    if not paths.key.exists():
        raise UsageError(f"no key at {paths.key}; enroll first with 'midbox enroll --name NAME'")
    for key in (paths.key, paths.next_key):
        if not key.exists():
            continue
        changed = encrypt_in_place(key, paths.key_password)
        state = "now encrypted under this host's key" if changed else "already encrypted"
        print(f"{key}: {state}", file=env.stdout)
    return 0


def _make_key(args: argparse.Namespace, env: CliEnv, target: _Target) -> int:
    from hardening.enroll.store import EnrollError, create_key_and_csr, enrolled_name, validate_name

    paths = target.paths
    if args.renew:
        name = enrolled_name(paths)
    else:
        try:
            name = validate_name(args.name)
        except EnrollError as e:
            raise UsageError(str(e)) from e
    if target.config_name is not None and name != target.config_name:
        raise UsageError(f"the config names appliance {target.config_name!r}, not {name!r}")
    made = create_key_and_csr(paths, name, renew=args.renew, force=args.force)
    audited, why_not = _audit(
        env,
        "enroll.key_created",
        {"name": name, "key_sha256": made.key_sha256, "csr_sha256": made.csr_sha256, "renewal": args.renew},
    )
    if env.json:
        record = {
            "key": str(made.key),
            "key_mode": f"{made.key_mode:04o}",
            "csr": str(made.csr),
            "subject": f"CN={made.agent}",
            "csr_sha256": made.csr_sha256,
            "key_sha256": made.key_sha256,
            "renewal": args.renew,
            "audited": audited,
        }
        emit_json(env, record)
    else:
        group = f", group {made.key_group}" if made.key_group is not None else ""
        print(
            f"private key (stays on this host, never send it): {made.key} (mode {made.key_mode:04o}{group})\n"
            f"certificate request: {made.csr}\n"
            f"  subject CN={made.agent}, SAN DNS:{made.agent}, ECDSA P-256, clientAuth\n"
            f"  CSR SHA-256: {made.csr_sha256}\n"
            f"  key SHA-256: {made.key_sha256}\n"
            f"next: send {made.csr.name} (only the CSR) to the CA that signs appliance certificates and\n"
            f"  confirm its SHA-256 with them by another channel; then run\n"
            f"  midbox enroll --install CERT --ca-file CLIENT-CA.pem{_where_hint(args)}",
            file=env.stdout,
        )
        if args.renew:
            print("the current key and certificate stay in force until that --install", file=env.stdout)
    if why_not:
        print(f"midbox: {why_not}", file=env.stderr)
    return 0


def _where_hint(args: argparse.Namespace) -> str:
    if args.config is not None:
        return f" --config {args.config}"
    return f" --out {args.out}" if args.out is not None else ""


def _install(args: argparse.Namespace, env: CliEnv, target: _Target) -> int:
    from appliance.doctor import CERT_WARN_DAYS
    from hardening.enroll.store import install, load_pending
    from hardening.enroll.verify import (
        parse_ca_file,
        parse_certificate_file,
        public_key_sha256,
        verify_certificate,
    )
    from hardening.identity import MAX_CA_FILE_BYTES, MAX_CERT_FILE_BYTES

    paths = target.paths
    ca_path: Path | None = args.ca_file or target.config_ca
    if ca_path is None:
        raise UsageError(
            "which CA signs appliance certificates? pass --ca-file CA (or --config CONFIG to use its ca_file)"
        )
    pending = load_pending(paths)
    if target.config_name is not None and pending.name != target.config_name:
        raise UsageError(
            f"the pending request is for {pending.name!r}; the config names {target.config_name!r}"
        )
    # 1. Size first, then parse (the CA file is read the same way, for step 6).
    unverified = parse_certificate_file(
        read_capped(args.install, MAX_CERT_FILE_BYTES, "certificate"), args.install.name
    )
    anchors = parse_ca_file(read_capped(ca_path, MAX_CA_FILE_BYTES, "CA file"), str(ca_path))
    # 2-6. Key, name, validity, leaf profile, chain.
    verified = verify_certificate(
        unverified,
        public_key=pending.public_key,
        name=pending.name,
        anchors=anchors,
        now=dt.datetime.now(dt.UTC),
        warn_days=CERT_WARN_DAYS,
    )
    install(paths, pending, verified)
    leaf = verified.leaf
    audited, why_not = _audit(
        env,
        "enroll.cert_installed",
        {
            "name": pending.name,
            "cert_sha256": verified.sha256,
            "key_sha256": public_key_sha256(pending.public_key),
            "not_after": leaf.not_valid_after_utc,
            "issuer": leaf.issuer.rfc4514_string()[:200],
            "renewal": pending.renewal,
        },
    )
    if env.json:
        record = {
            "cert": str(paths.cert),
            "key": str(paths.key),
            "cert_sha256": verified.sha256,
            "not_after": f"{leaf.not_valid_after_utc:%Y-%m-%dT%H:%M:%SZ}",
            "renewal": pending.renewal,
            "warnings": list(verified.warnings),
            "audited": audited,
        }
        emit_json(env, record)
    else:
        what = "renewed key and certificate" if pending.renewal else "certificate"
        print(
            f"installed {what}: {paths.cert} (key {paths.key})\n"
            f"  certificate SHA-256: {verified.sha256}\n"
            f"  valid until {leaf.not_valid_after_utc:%Y-%m-%d %H:%M}Z\n"
            f"  issued by {leaf.issuer.rfc4514_string()}",
            file=env.stdout,
        )
        if pending.renewal:
            print("restart the appliance to use it: systemctl restart midbox", file=env.stdout)
    for warning in verified.warnings:
        print(f"midbox: warning: {warning}", file=env.stderr)
    if why_not:
        print(f"midbox: {why_not}", file=env.stderr)
    return 0


def _audit(env: CliEnv, event: str, fields: dict[str, object]) -> tuple[bool, str | None]:
    """Record in the state dir's audit log if there is one and it is ours: (recorded, why not).

    The running appliance holds the log's lock, so then nothing is written and the reason is returned.
    Root writes as the state dir's owner (hardening.runas), so the log stays the service user's.
    """
    from hardening.audit import AuditError, audit_dir, open_audit_log
    from hardening.runas import acting_as, state_owner

    directory = audit_dir(env.state_dir)
    with acting_as(state_owner(env.state_dir)):
        if not any(directory.glob("audit-*.log")):
            return False, None  # not set up yet (first enrollment comes before the first run)
        try:
            log = open_audit_log(env.state_dir)
        except AuditError as e:
            return False, f"not audited: {e}"
        try:
            log.record(event, fields)
        finally:
            log.close()
    return True, None
