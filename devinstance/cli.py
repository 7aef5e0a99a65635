"""``midbox-dev-instance``: run the development instance, enqueue outputs, read inputs."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import ssl
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from devinstance import pki
from devinstance.discovery.commands import add_shape_options, register_discover, shaped_output
from devinstance.server import DevInstance, InstanceState, server_context
from devinstance.store import Store
from hardening.atomic import atomic_write


def init(directory: Path, appliances: Sequence[str]) -> None:
    """CA, server certificate, and one client certificate per appliance name (idempotent)."""
    pki_dir = directory / "pki"
    ca = pki.ensure_ca(pki_dir)
    if not (pki_dir / "server.crt").exists():
        pki.issue(ca, pki_dir, "server", "localhost", server=True)
    for name in appliances:
        if not (pki_dir / f"appliance-{name}.crt").exists():
            pki.issue(ca, pki_dir, f"appliance-{name}", f"mid.server.{name}", server=False)


def _init(args: argparse.Namespace) -> int:
    init(args.dir, args.appliance)
    return 0


PORT_FILE = "port"


def _listen(state: InstanceState, ctx: ssl.SSLContext, directory: Path, port: int | None) -> DevInstance:
    """On ``port``, else on the port this directory used last, so a restart keeps the URL a signed
    config names (a new port means signing the config again); an ephemeral one the first time."""
    stored = directory / PORT_FILE
    if port is None and stored.is_file():
        try:
            last = int(stored.read_text(encoding="ascii").strip())
            instance = DevInstance(state, ctx, host="127.0.0.1", port=last)
        except (ValueError, OSError) as e:
            print(
                f"the last port is not usable ({e}); listening on a new one: sign the config again",
                flush=True,
            )
        else:
            return instance
    instance = DevInstance(state, ctx, host="127.0.0.1", port=port or 0)
    stored.write_text(f"{instance.port}\n", encoding="ascii")
    return instance


def _sign_csr(args: argparse.Namespace) -> int:
    pki_dir = args.dir / "pki"
    ca = pki.ensure_ca(pki_dir)
    try:
        with open(args.csr, "rb") as fh:
            data = fh.read(pki.MAX_CSR_BYTES + 1)
        cert = pki.sign_csr(ca, data)
    except OSError as e:
        print(f"midbox-dev-instance: cannot read {args.csr}: {e.strerror}", file=sys.stderr)
        return 2
    except pki.CsrError as e:
        print(f"midbox-dev-instance: {e}", file=sys.stderr)
        return 1
    args.out.write_bytes(cert)
    print(
        f"signed {args.out}; install it with: midbox enroll --install {args.out} --ca-file {ca.cert}",
        flush=True,
    )
    return 0


def _serve(args: argparse.Namespace) -> int:
    directory: Path = args.dir
    init(directory, args.appliance)
    pki_dir = directory / "pki"
    ctx = server_context(pki_dir / "ca.pem", pki_dir / "server.crt", pki_dir / "server.key")
    store = Store(directory / "instance.db")
    if args.precreate_agent:
        # As an admin would, where the instance forbids a MID to create its own record.
        for name in args.appliance:
            store.ensure_agent(name, validated=args.validated)
    state = InstanceState(
        store, failover_after_s=args.failover_s, refuse_agent_writes=args.refuse_agent_writes
    )
    state.clusters = [tuple(c.split(",")) for c in args.cluster]
    instance = _listen(state, ctx, directory, args.port)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    instance.start()
    # Readers poll for this file: write it whole or not at all.
    atomic_write(directory / "instance.json", json.dumps({"url": instance.url, "pid": os.getpid()}).encode())
    print(f"development instance listening on {instance.url} (CA {pki_dir / 'ca.pem'})", flush=True)
    last_heartbeat = time.monotonic()
    while not stop.wait(0.5):
        if args.heartbeat_s and time.monotonic() - last_heartbeat >= args.heartbeat_s:
            last_heartbeat = time.monotonic()
            for row in store.query("ecc_agent", "status=Up"):
                store.enqueue(
                    [
                        {
                            "agent": f"mid.server.{row['name']}",
                            "topic": "HeartbeatProbe",
                            "name": "HeartbeatProbe",
                            "source": "",
                            "payload": "",
                            "priority": "0",
                        }
                    ]
                )
    instance.stop()
    store.close()
    return 0


def params_xml(params: Sequence[str]) -> str:
    import xml.etree.ElementTree as ET  # nosec B405

    root = ET.Element("parameters")
    for item in params:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--param needs NAME=VALUE, got {item!r}")
        ET.SubElement(root, "parameter", name=key, value=value)
    return ET.tostring(root, encoding="unicode")


def _enqueue(args: argparse.Namespace) -> int:
    store = Store(args.dir / "instance.db")
    agent = args.agent if args.agent.startswith("mid.server.") else f"mid.server.{args.agent}"
    if args.shape:
        if args.payload is not None or args.topic:
            raise SystemExit("--shape builds topic and payload: leave out --topic and --payload")
        record = shaped_output(args).record(agent, priority=args.priority, correlator=args.correlator)
    elif not args.topic:
        raise SystemExit("enqueue needs --topic TOPIC, or --shape shazzam|snmp-classify|ssh-classify")
    else:
        record = {
            "agent": agent,
            "topic": args.topic,
            "name": args.name or args.topic,
            "source": args.source,
            "payload": args.payload if args.payload is not None else params_xml(args.param),
            "priority": args.priority,
            "agent_correlator": args.correlator,
        }
    outputs = [dict(record) for _ in range(args.count)]
    for sys_id in store.enqueue(outputs):
        print(sys_id)
    store.close()
    return 0


def _push_config(args: argparse.Namespace) -> int:
    from devinstance.configpush import push_records

    store = Store(args.dir / "instance.db")
    try:
        records = push_records(args.config, args.agent)
    except OSError as e:
        raise SystemExit(
            f"cannot read {e.filename}: {e.strerror}; sign the config first (midbox config sign)"
        ) from e
    for sys_id in store.enqueue(records):
        print(sys_id)
    store.close()
    return 0


def _validate(args: argparse.Namespace) -> int:
    store = Store(args.dir / "instance.db")
    row = store.validate_agent(args.agent, validated=not args.invalidate)
    store.close()
    if row is None:
        print(f"no ecc_agent record named {args.agent!r}; start the appliance once, or --precreate-agent")
        return 1
    print(f"{row['name']}: status {row['status']}, validated {row['validated']}")
    return 0


def _results(args: argparse.Namespace) -> int:
    store = Store(args.dir / "instance.db")
    if args.sense:
        for row in store.sense():
            print(f"sensed {row['topic']} {row['sys_id']}", file=sys.stderr)
    query = "queue=input^topic!=queue.processing^ORDERBYsys_created_on"
    deadline = time.monotonic() + args.wait
    rows = store.query("ecc_queue", query)
    while len(rows) < args.expect and time.monotonic() < deadline:
        time.sleep(0.2)
        rows = store.query("ecc_queue", query)
    for row in rows:
        if args.json:
            print(json.dumps(row, sort_keys=True))
        else:
            state = "ERROR " + row["error_string"] if row["error_string"] else "ok"
            print(
                f"{row['topic']:<16} {row['name'][:40]:<40} {row['source'][:24]:<24} "
                f"response_to={row['response_to']} {state}"
            )
            if args.payload:
                print(f"    {row['payload']}")
    store.close()
    return 0 if len(rows) >= args.expect else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="midbox-dev-instance", description="the midbox development instance"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("init", help="make the CA, server and appliance certificates")
    p.add_argument("--dir", type=Path, required=True)
    p.add_argument("--appliance", action="append", default=[])
    p.set_defaults(func=_init)
    p = sub.add_parser("serve", help="run the instance on 127.0.0.1 until SIGTERM")
    p.add_argument("--dir", type=Path, required=True)
    p.add_argument(
        "--port", type=int, default=None, help="default: the port this --dir used last (kept in DIR/port)"
    )
    p.add_argument("--appliance", action="append", default=[])
    p.add_argument("--heartbeat-s", type=float, default=300.0, help="HeartbeatProbe interval (0: off)")
    p.add_argument("--cluster", action="append", default=[], help="NAME1,NAME2,...: a failover cluster")
    p.add_argument("--failover-s", type=float, default=30.0, help="silence after which a member's work moves")
    p.add_argument(
        "--precreate-agent",
        action="store_true",
        help="create each --appliance's ecc_agent record (Down) before it connects, as an admin would; "
        "default: no record until the MID creates it, as on a fresh instance",
    )
    p.add_argument("--validated", action="store_true", help="with --precreate-agent: records start validated")
    p.add_argument(
        "--refuse-agent-writes",
        action="store_true",
        help="answer 403 to every write to ecc_agent, like a business rule or an ACL",
    )
    p.set_defaults(func=_serve)
    p = sub.add_parser("sign-csr", help="sign an appliance's CSR (midbox enroll) with the development CA")
    p.add_argument("csr", type=Path)
    p.add_argument("--out", type=Path, required=True, metavar="CRT")
    p.add_argument("--dir", type=Path, required=True)
    p.set_defaults(func=_sign_csr)

    p = sub.add_parser("validate", help="the admin's Validate on a MID record (ecc_agent.validated)")
    p.add_argument("--dir", type=Path, required=True)
    p.add_argument("--agent", required=True, help="appliance name")
    p.add_argument("--invalidate", action="store_true", help="Invalidate instead")
    p.set_defaults(func=_validate)
    p = sub.add_parser("enqueue", help="insert output records for an appliance")
    p.add_argument("--dir", type=Path, required=True)
    p.add_argument("--agent", required=True, help="appliance name or mid.server.NAME")
    p.add_argument("--topic", help="the output's topic (or --shape)")
    p.add_argument("--name", default="")
    p.add_argument("--source", default="")
    p.add_argument("--param", action="append", default=[], help="NAME=VALUE, repeatable")
    p.add_argument("--payload", default=None, help="raw payload XML instead of --param")
    p.add_argument("--priority", default="2")
    p.add_argument("--correlator", default="")
    p.add_argument("--count", type=int, default=1)
    add_shape_options(p)
    p.set_defaults(func=_enqueue)
    p = sub.add_parser(
        "push-config", help="deliver a signed config (CONFIG and CONFIG.sig) to appliances (midbox.config)"
    )
    p.add_argument("config", type=Path)
    p.add_argument("--dir", type=Path, required=True)
    p.add_argument("--agent", action="append", required=True, help="appliance name, repeatable")
    p.set_defaults(func=_push_config)
    register_discover(sub)
    p = sub.add_parser("results", help="print input records (results)")
    p.add_argument("--dir", type=Path, required=True)
    p.add_argument("--json", action="store_true")
    p.add_argument("--payload", action="store_true", help="print each payload too")
    p.add_argument("--expect", type=int, default=0, help="wait until at least this many")
    p.add_argument("--wait", type=float, default=0.0, help="seconds to wait for --expect")
    p.add_argument(
        "--sense", action="store_true", help="act as the sensors: mark the ready inputs processed first"
    )
    p.set_defaults(func=_results)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    args = build_parser().parse_args(argv)
    return int(args.func(args))
