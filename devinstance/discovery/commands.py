"""Command-line parts for real-shaped Discovery: ``enqueue --shape`` and ``discover``."""

from __future__ import annotations

import argparse
from pathlib import Path

from devinstance.discovery.sequence import CredentialChoice, DiscoveryPlan, discover
from devinstance.discovery.shapes import (
    Output,
    default_port_probes,
    shazzam_output,
    snmp_classify_output,
    ssh_classify_output,
)
from devinstance.store import Store

SHAPES = ("shazzam", "snmp-classify", "ssh-classify")


def add_port_options(parser: argparse.ArgumentParser) -> None:
    """Ports of the port probes (real Discovery: 22, 161, 80, 443, 135; loopback daemons elsewhere)."""
    parser.add_argument("--ssh-port", type=_port, default=22)
    parser.add_argument("--snmp-port", type=_port, default=161)
    parser.add_argument("--http-port", type=_port, default=80)
    parser.add_argument("--https-port", type=_port, default=443)
    parser.add_argument("--generic-port", type=_port, default=135, help="the GenericTCP probe's port")


def add_shape_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--shape",
        choices=SHAPES,
        help="a real-shaped Discovery output (topic, name and parameters built; --param adds to them)",
    )
    parser.add_argument(
        "--range", action="append", default=[], help="shazzam: address, a-b or CIDR; repeatable"
    )
    parser.add_argument("--port", type=_port, help="snmp-classify/ssh-classify: the target port")
    parser.add_argument(
        "--credential-id", help="classify: a discovery_credentials sys_id, as the instance adds"
    )
    parser.add_argument("--credential-tag", help="classify: a credential tag")
    add_port_options(parser)


def shaped_output(args: argparse.Namespace) -> Output:
    """The Output ``enqueue --shape`` inserts; --param pairs are appended to the built parameters."""
    shape = args.shape
    if shape == "shazzam":
        ranges = args.range or ([args.source] if args.source else [])
        if not ranges:
            raise SystemExit("--shape shazzam needs --range ADDRESS|A-B|CIDR (or --source)")
        out = shazzam_output(ranges, _probes(args))
    else:
        if not args.source:
            raise SystemExit(f"--shape {shape} needs --source ADDRESS (the target)")
        build = snmp_classify_output if shape == "snmp-classify" else ssh_classify_output
        port = args.port or (args.snmp_port if shape == "snmp-classify" else args.ssh_port)
        out = build(
            args.source, port=port, credential_id=args.credential_id, credential_tag=args.credential_tag
        )
    extra = tuple(_pair(p) for p in args.param)
    names = {n for n, _ in out.parameters}
    clash = next((n for n, _ in extra if n in names), None)
    if clash:
        raise SystemExit(f"--param {clash} is already set by --shape {shape}: leave it out")
    return Output(out.topic, args.name or out.name, out.source, out.parameters + extra)


def register_discover(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("discover", help="run Shazzam, then the classifiers its sensor launches")
    p.add_argument("ranges", nargs="+", metavar="RANGE", help="address, a-b or CIDR")
    p.add_argument("--dir", type=Path, required=True)
    p.add_argument("--agent", required=True, help="appliance name or mid.server.NAME")
    add_port_options(p)
    p.add_argument("--ssh-credential-id")
    p.add_argument("--ssh-credential-tag")
    p.add_argument("--snmp-credential-id")
    p.add_argument("--snmp-credential-tag")
    p.add_argument(
        "--first", action="store_true", help="stop at the first classifier that works (real priority)"
    )
    p.add_argument("--timeout", type=float, default=120.0, help="seconds for the whole sequence")
    p.set_defaults(func=_discover)


def _discover(args: argparse.Namespace) -> int:
    plan = DiscoveryPlan(
        agent=args.agent,
        ranges=tuple(args.ranges),
        port_probes=_probes(args),
        ssh=CredentialChoice(args.ssh_credential_id, args.ssh_credential_tag),
        snmp=CredentialChoice(args.snmp_credential_id, args.snmp_credential_tag),
        every_classifier=not args.first,
        timeout_s=args.timeout,
    )
    store = Store(args.dir / "instance.db")
    try:
        report = discover(store, plan, progress=lambda text: print(f"-> {text}", flush=True))
    finally:
        store.close()
    for line in report.lines():
        print(line)
    return 0 if report.ok else 1


def _probes(args: argparse.Namespace) -> tuple:  # type: ignore[type-arg]
    return default_port_probes(
        ssh=args.ssh_port,
        snmp=args.snmp_port,
        http=args.http_port,
        https=args.https_port,
        generic=args.generic_port,
    )


def _pair(item: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise SystemExit(f"--param needs NAME=VALUE, got {item!r}")
    return key, value


def _port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"port must be 1..65535, got {text!r}")
    return int(text)
