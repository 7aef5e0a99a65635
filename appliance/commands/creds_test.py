"""``midbox creds test ALIAS --target HOST[:PORT] [--probe P]``: one policy-checked probe with a credential.

What the instance's "test credential" button asks of a MID, but local: an SSH login that runs ``true``
(a rule with ``commands`` must list it), an SNMP GET of sysObjectID.0, an HTTP HEAD of ``/``. The job
goes through the same dispatcher, policy (scopes included), rate limits and probes as ``run``; its
audit events go to the audit log: directly while the appliance is stopped, and through the audit
inbox (``hardening.audit.inbox``) to the running appliance, which holds the log, while it runs.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING

from appliance.commands.common import CliEnv, add_leaf, emit_json
from appliance.commands.doctor import DEFAULT_CONFIG_HELP, default_config
from appliance.errors import EXIT_CHECK_FAILED, UsageError

if TYPE_CHECKING:
    from appliance.config.model import Config
    from appliance.interfaces import CredentialSource

_TOPIC = {"ssh": "SSHCommand", "snmp": "SNMP", "http": "RESTProbe"}
_DEFAULT_PORT = {"ssh": 22, "snmp": 161, "http": 443}


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:  # type: ignore[type-arg]
    t = add_leaf(
        sub, "test", common, _test, "try one credential against one target, policy-checked and audited"
    )
    t.add_argument("alias", metavar="ALIAS")
    t.add_argument("--target", required=True, help="HOST or HOST:PORT ([v6]:PORT)")
    t.add_argument("--probe", choices=sorted(_TOPIC), help="default: from the credential's type")
    t.add_argument(
        "--config", type=Path, default=None, help=f"the signed config (default {DEFAULT_CONFIG_HELP})"
    )
    t.add_argument("--passphrase-file", type=Path, help="the store passphrase, from this 0600 file")


def _split(target: str) -> tuple[str, int | None]:
    if target.startswith("["):
        host, _, rest = target[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else None
    elif target.count(":") == 1:
        host, port = target.split(":")
    else:
        host, port = target, None
    if port is not None and not (port.isdigit() and 1 <= int(port) <= 65535):
        raise UsageError("--target port must be 1-65535, as HOST:PORT")
    if not host:
        raise UsageError("--target needs a host")
    return host, int(port) if port is not None else None


def _test(args: argparse.Namespace, env: CliEnv) -> int:
    from appliance.commands.common import read_capped
    from appliance.config.verify import load_verified_config
    from appliance.credentials import open_credentials
    from appliance.credtypes import PROBE_TYPES
    from appliance.quarantine import Quarantine

    host, port = _split(args.target)
    if (state := Quarantine(env.state_dir).read()).on:
        raise UsageError(
            f"the appliance is quarantined ({state.reason or 'no reason given'}): no probe runs, "
            "this one neither; 'midbox quarantine off' first"
        )
    cfg = load_verified_config(
        args.config or default_config(env), env.state_dir, dt.datetime.now(dt.UTC), commit=False
    )
    creds_dir = env.environ.get("CREDENTIALS_DIRECTORY")
    passphrase = (
        read_capped(args.passphrase_file, 4096, "passphrase file").rstrip(b"\r\n")
        if args.passphrase_file
        else None
    )
    store = open_credentials(
        env.state_dir, credentials_directory=Path(creds_dir) if creds_dir else None, passphrase=passphrase
    )
    try:
        kind = args.probe or next(
            (p for p, types in PROBE_TYPES.items() if store.lookup(args.alias).type in types), None
        )
        if kind not in _TOPIC:
            raise UsageError(f"credential {args.alias!r} fits no probe midbox can test; pass --probe")
        error, events = asyncio.run(
            _run(cfg, store, env.state_dir, kind, host, port or _DEFAULT_PORT[kind], args.alias)
        )
    finally:
        store.close()
    audited = _write_audit(env, events)
    if env.json:
        emit_json(
            env, {"ok": error is None, "probe": kind, "target": host, "error": error, "audited": audited}
        )
    else:
        print(
            f"{'OK' if error is None else 'FAILED'}: {kind} with {args.alias!r} on {args.target}"
            f"{'' if error is None else ': ' + error}",
            file=env.stdout,
        )
        print(f"  {audited}", file=env.stdout)
    return 0 if error is None else EXIT_CHECK_FAILED


async def _run(
    cfg: Config, store: CredentialSource, state_dir: Path, kind: str, host: str, port: int, alias: str
) -> tuple[str | None, list[tuple[str, dict[str, object]]]]:
    from xml.sax.saxutils import quoteattr

    from appliance.app import default_probes, limiter
    from appliance.dispatch import Dispatcher
    from appliance.limits import Limits
    from appliance.probes.base import MemoryAudit, ProbeContext
    from appliance.queue.records import OutputRecord

    audit = MemoryAudit()
    limits = Limits()
    ctx = ProbeContext(
        cfg.policy(),
        store,
        audit,
        limits,
        state_dir,
        credential_map=cfg.credential_map,
        limiter=limiter(cfg, audit),
    )
    literal = f"[{host}]" if ":" in host else host
    params = {"credential": alias, "port": str(port)}
    name = kind
    if kind == "ssh":
        name = "true"
    elif kind == "snmp":
        params["oid_spec_list"] = "get sysObjectID.0"
    else:
        scheme = "http" if port in (80, 8080) else "https"
        params = {"credential": alias, "url": f"{scheme}://{literal}:{port}/", "http_method": "HEAD"}
    body = "".join(f"<parameter name={quoteattr(k)} value={quoteattr(v)}/>" for k, v in params.items())
    record = OutputRecord(
        sys_id="c0ffee" + "0" * 26, agent=cfg.appliance.agent, topic=_TOPIC[kind],
        name=name, source=host, payload=f"<parameters>{body}</parameters>", state="ready",
        agent_correlator="", priority="0", sys_created_on="",
    )  # fmt: skip
    dispatcher = Dispatcher(default_probes(lambda: {}, limits), ctx)
    try:
        outcome = await dispatcher.handle(record)
    finally:
        await dispatcher.aclose()
    return outcome.error, audit.events


def _write_audit(env: CliEnv, events: list[tuple[str, dict[str, object]]]) -> str:
    import os

    from hardening.audit import AuditError, AuditLogBusyError, audit_dir, open_audit_log

    directory = audit_dir(env.state_dir)
    if os.name == "posix" and directory.is_dir() and directory.stat().st_uid != os.geteuid():
        return "not audited: the audit log belongs to the service user; run this as that user"
    try:
        log = open_audit_log(env.state_dir)
    except AuditLogBusyError:
        return _hand_to_appliance(env, events)
    except AuditError as e:
        return f"not audited: {e}"
    try:
        for event, fields in events:
            log.record(event, {**fields, "by": "creds test"})
    finally:
        log.close()
    return f"audited: {len(events)} event(s) in the audit log"


def _hand_to_appliance(env: CliEnv, events: list[tuple[str, dict[str, object]]]) -> str:
    """The appliance runs and holds the log: it records the events from the audit inbox."""
    import time

    from appliance.limits import CREDS_TEST_AUDIT_WAIT_S
    from hardening.audit import AuditError
    from hardening.audit.inbox import INBOX_POLL_S, submit, waiting

    try:
        inbox_id = submit(env.state_dir, events, by="creds test")
    except (AuditError, OSError) as e:
        return f"not audited: the running appliance's audit inbox refused the events ({e})"
    deadline = time.monotonic() + CREDS_TEST_AUDIT_WAIT_S
    while waiting(env.state_dir, inbox_id):
        if time.monotonic() >= deadline:
            return (
                f"queued: {len(events)} event(s) wait in the audit inbox (id {inbox_id}); the appliance "
                "records them when it next looks, or at its next start: check 'midbox status'"
            )
        time.sleep(INBOX_POLL_S / 5)
    return f"audited: {len(events)} event(s) recorded by the running appliance (inbox id {inbox_id})"
