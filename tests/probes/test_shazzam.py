"""Shazzam as an instance builds it (port_probes + ranges), against real loopback listeners and sshd."""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import json
import socket
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from appliance.errors import PayloadError, TargetDeniedError
from appliance.limits import Limits
from appliance.payload import build_results
from appliance.probes._shazzamranges import parse_ranges
from appliance.probes.base import Job, ProbeContext
from appliance.probes.tcpscan import TcpScanProbe
from devinstance.discovery.sensors import ShazzamHost, classifiers_to_launch, read_shazzam
from devinstance.discovery.shapes import default_port_probes, shazzam_output
from hardening.policy import AllowRule, Policy, PortRange
from tests.daemons import SnmpServer, SshServer
from tests.probes.conftest import (
    MemCredential,
    MemCredentials,
    ProbeAudit,
    closed_port,
    listener,
    make_ctx,
    make_job,
    unanswered_port,
)


def rule(
    cidr: str,
    probes: tuple[str, ...] = ("tcp",),
    ports: tuple[tuple[int, int], ...] = ((1, 65535),),
    creds: tuple[str, ...] = (),
) -> AllowRule:
    return AllowRule(
        (ipaddress.ip_network(cidr),), (), frozenset(probes), tuple(PortRange(a, b) for a, b in ports), creds
    )


def ctx(
    tmp_path: Path, *rules: AllowRule, limits: Limits | None = None, creds: MemCredentials | None = None
) -> ProbeContext:
    policy = Policy(list(rules or (rule("127.0.0.1/32"),)))
    return make_ctx(policy, creds or MemCredentials(), tmp_path, limits)


def spec(*probes: tuple[str, str, str, str, str]) -> str:
    body = "".join(
        f'<port_probe name="{n}" scanner="{sc}" service="{sv}" port="{p}" protocol="{pr}"/>'
        for n, sc, sv, p, pr in probes
    )
    return f"<port_probes>{body}</port_probes>"


def job(port_probes: str, ranges: object, **params: str):  # type: ignore[no-untyped-def]
    text = ranges if isinstance(ranges, str) else json.dumps(ranges)
    return make_job("Shazzam", "Shazzam", "", port_probes=port_probes, ranges=text, **params)


def run(j, c: ProbeContext, probe: TcpScanProbe | None = None) -> dict[str, ShazzamHost]:  # type: ignore[no-untyped-def]
    async def go() -> ET.Element:
        p = probe or TcpScanProbe()
        try:
            return await p.run(j, c)
        finally:
            await p.aclose()

    element = asyncio.run(go())
    payload = build_results(
        result=element, echo_record={}, parameters=j.parameters, probe_time_ms=1, error=None
    )
    return {h.ip_address: h for h in read_shazzam(payload)}


def attr(host: ShazzamHost, portprobe: str, name: str) -> str:
    """An attribute of the scanner element of ``portprobe`` (the sensor's ``value`` has result and port)."""
    scanner = next(s for s in host.scanners if s.portprobe == portprobe)
    return str(getattr(scanner, name))


def test_banner_refused_and_silent_ports(tmp_path: Path, sshd: SshServer) -> None:
    closed = closed_port()
    with listener() as silent, listener() as web:
        quiet, http = silent.getsockname()[1], web.getsockname()[1]
        started = time.monotonic()
        got = run(
            job(
                spec(
                    ("ssh", "BannerTCP", "ssh", str(sshd.port), "tcp"),
                    ("quiet", "BannerTCP", "quiet", str(quiet), "tcp"),
                    ("telnet", "GenericTCP", "telnet", str(closed), "tcp"),
                    ("http", "HTTP", "http", str(http), "tcp"),
                ),
                ["127.0.0.1"],
                BannerTCP_waitForConnectMS="400",
            ),
            ctx(tmp_path),
        )
        elapsed = time.monotonic() - started
    host = got["127.0.0.1"]
    assert host.alive and host.active
    assert host.value("ssh.ssh.result") == "open"
    assert (host.value("ssh.ssh.banner_text") or "").startswith("SSH-2.0-OpenSSH")
    assert host.value("ssh.ssh.port") == str(sshd.port) and attr(host, "ssh", "name") == "BannerTCP"
    # A server that never speaks: the port is open, the banner read times out, no banner is made up.
    assert host.value("quiet.quiet.result") == "open" and host.value("quiet.quiet.banner_text") is None
    assert host.value("telnet.telnet.result") == "refused"
    assert host.value("http.http.result") == "open" and attr(host, "http", "protocol") == "tcp"
    assert 0.3 <= elapsed < 5  # the silent banner waited for BannerTCP_waitForConnectMS, not forever


def test_result_layout_is_the_instance_shape(tmp_path: Path, sshd: SshServer) -> None:
    j = job(spec(("ssh", "BannerTCP", "ssh", str(sshd.port), "tcp")), ["127.0.0.1"])
    element = asyncio.run(TcpScanProbe().run(j, ctx(tmp_path)))
    root = ET.fromstring(
        build_results(result=element, echo_record={}, parameters=j.parameters, probe_time_ms=1, error=None)
    )
    results = root.findall("result")
    assert len(results) == 1 and results[0].attrib == {
        "alive": "true",
        "active": "true",
        "ip_address": "127.0.0.1",
    }
    scanner = results[0].find("scanner")
    assert scanner is not None and list(scanner.attrib.items()) == [
        ("service", "ssh"),
        ("result", "open"),
        ("protocol", "tcp"),
        ("portprobe", "ssh"),
        ("port", str(sshd.port)),
        ("name", "BannerTCP"),
    ]
    assert root.find("parameters/parameter[@name='port_probes']") is not None  # the echo


def test_denied_pairs_are_left_out_and_never_touched(tmp_path: Path) -> None:
    with listener("127.0.0.1") as a, listener("127.0.0.2") as b, listener("127.0.0.1") as c:
        pa, pb, pc = a.getsockname()[1], b.getsockname()[1], c.getsockname()[1]
        b.setblocking(False)
        c.setblocking(False)
        context = ctx(tmp_path, rule("127.0.0.1/32", ports=((pa, pa),)))
        got = run(
            job(
                spec(("a", "GenericTCP", "a", f"{pa},{pb}", "tcp"), ("c", "GenericTCP", "c", str(pc), "tcp")),
                ["127.0.0.1-127.0.0.2"],
            ),
            context,
        )
        for s in (b, c):
            with pytest.raises(BlockingIOError):
                s.accept()  # nothing ever connected to a denied pair
    assert set(got) == {"127.0.0.1"}
    host = got["127.0.0.1"]
    assert host.value("a.a.port") == str(pa) and host.value("c.c.result") is None
    assert isinstance(context.audit, ProbeAudit)
    denied = [f for e, f in context.audit.events if e == "target.denied"]
    assert len(denied) == 1 and denied[0]["pairs"] == 5  # .1:pb .1:pc .2:pa .2:pb .2:pc


def test_everything_denied_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(TargetDeniedError, match="no address/port of this scan is allowed"):
        run(job(spec(("ssh", "BannerTCP", "ssh", "22", "tcp")), ["10.0.0.1-10.0.0.3"]), ctx(tmp_path))


def test_excludes_are_honoured(tmp_path: Path) -> None:
    with listener("127.0.0.2") as b, listener("127.0.0.3") as d:
        port = b.getsockname()[1]
        d.close()
        b.setblocking(False)
        context = ctx(tmp_path, rule("127.0.0.0/29"))
        got = run(
            job(
                spec(("p", "GenericTCP", "p", str(port), "tcp")),
                {"ranges": ["127.0.0.1-127.0.0.3"], "excludes": ["127.0.0.2"]},
            ),
            context,
        )
        with pytest.raises(BlockingIOError):
            b.accept()
    assert "127.0.0.2" not in got
    assert got["127.0.0.1"].value("p.p.result") == "refused"


def test_xml_ranges_and_object_items(tmp_path: Path) -> None:
    with listener() as a:
        port = a.getsockname()[1]
        probes = spec(("p", "GenericTCP", "p", str(port), "tcp"))
        xml = '<ranges><range start="127.0.0.1" end="127.0.0.2"/><exclude address="127.0.0.2"/></ranges>'
        assert run(job(probes, xml), ctx(tmp_path))["127.0.0.1"].value("p.p.result") == "open"
        objects = [{"network": "127.0.0.0", "mask": "255.255.255.252"}, {"address": "127.0.0.1"}]
        got = run(job(probes, objects), ctx(tmp_path, rule("127.0.0.0/30")))
    assert got["127.0.0.1"].active and not got["127.0.0.2"].active and got["127.0.0.2"].alive


def test_report_inactive_and_dead(tmp_path: Path) -> None:
    closed = closed_port()
    probes = spec(("p", "GenericTCP", "p", str(closed), "tcp"))
    inactive = run(job(probes, ["127.0.0.1"]), ctx(tmp_path))["127.0.0.1"]
    assert inactive.alive and not inactive.active and inactive.value("p.p.result") == "refused"
    assert run(job(probes, ["127.0.0.1"], shazzam_report_inactive="false"), ctx(tmp_path)) == {}
    # A listener with a full accept queue drops further SYNs: nothing answers, the address is dead.
    with unanswered_port() as port:
        dead = spec(("p", "GenericTCP", "p", str(port), "tcp"))
        assert run(job(dead, ["127.0.0.1"], GenericTCP_waitForConnectMS="200"), ctx(tmp_path)) == {}
        got = run(
            job(dead, ["127.0.0.1"], GenericTCP_waitForConnectMS="200", shazzam_report_dead="true"),
            ctx(tmp_path),
        )
    host = got["127.0.0.1"]
    assert not host.alive and not host.active and host.value("p.p.result") == "timed_out"


def test_unsupported_scanners_are_reported_not_dropped(tmp_path: Path) -> None:
    with listener() as a:
        port = a.getsockname()[1]
        got = run(
            job(
                spec(("p", "GenericTCP", "p", str(port), "tcp"), ("dns", "DNS", "dns", "53", "udp")),
                ["127.0.0.1"],
            ),
            ctx(tmp_path),
        )
    host = got["127.0.0.1"]
    assert host.value("dns.dns.result") == "io_error" and attr(host, "dns", "name") == "DNS"
    assert "does not implement the DNS scanner" in (host.value("dns.dns.error_msg") or "")
    with pytest.raises(PayloadError, match="only scanners midbox does not implement"):
        run(job(spec(("nbt", "NBT", "nbt", "137", "udp")), ["127.0.0.1"]), ctx(tmp_path))


def test_deadline_marks_the_results_truncated(tmp_path: Path) -> None:
    with unanswered_port() as port:
        j = job(
            spec(("p", "GenericTCP", "p", str(port), "tcp")),
            ["127.0.0.1"],
            GenericTCP_waitForConnectMS="20000",
        )
        element = asyncio.run(TcpScanProbe().run(j, ctx(tmp_path, limits=Limits(probe_timeout_s=0.5))))
    root = ET.fromstring(
        build_results(result=element, echo_record={}, parameters=(), probe_time_ms=1, error=None)
    )
    assert root.get("truncated") == "true" and root.findall("result") == []


def test_pair_cap_is_checked_before_expansion(tmp_path: Path) -> None:
    with pytest.raises(PayloadError, match="cap is 100"):
        run(
            job(spec(("p", "GenericTCP", "p", "1-1000", "tcp")), ["10.0.0.0/8"]),
            ctx(tmp_path, limits=Limits(scan_targets=100)),
        )


def test_dash_ranges_cidrs_and_excludes_expand_as_written() -> None:
    r = parse_ranges(
        json.dumps(
            {"ranges": ["10.0.0.1-10.0.0.40", "10.0.1.0/30", "10.0.2.9"], "exclude": ["10.0.0.5", "10.0.0.6"]}
        )
    )
    addresses = [str(a) for a in r.addresses()]
    assert len(addresses) == 40 - 2 + 2 + 1
    assert (
        addresses[0] == "10.0.0.1"
        and "10.0.0.5" not in addresses
        and addresses[-3:] == ["10.0.1.1", "10.0.1.2", "10.0.2.9"]
    )
    assert r.upper_bound == 43


@pytest.mark.parametrize(
    ("ranges", "message"),
    [
        ('{"ranges": ["10.0.0.1"], "subnets": []}', "unknown key 'subnets'.*capture"),
        ('[{"first": "10.0.0.1", "last": "10.0.0.2"}]', "unknown key 'first'.*capture"),
        ('[{"start": "10.0.0.1"}]', "start\\+end"),
        ("[1, 2]", "must be a string or an object"),
        ('["10.0.0.40-10.0.0.1"]', "lower to a higher"),
        ('["10.0.0.1/24"]', "host bits"),
        ('["host.example"]', "not an IP address"),
        ('["fe80::1%eth0"]', "zone"),
        ("[", "not valid JSON"),
        ("[]", "names no address"),
        ("10.0.0.1,10.0.0.2", "must be JSON"),
        ('<ranges><subnet a="1"/></ranges>', "unknown element <subnet>.*capture"),
        ('<ranges><range start="10.0.0.1" end="10.0.0.2" step="2"/></ranges>', "unknown key 'step'"),
        ("<ranges><range>", "not well-formed"),
        ("[" * 100_000, "not valid JSON"),
    ],
)
def test_malformed_ranges_are_refused_by_name(ranges: str, message: str) -> None:
    with pytest.raises(PayloadError, match=message):
        parse_ranges(ranges)


@pytest.mark.parametrize(
    ("port_probes", "message"),
    [
        ("<port_probe/>", "root must be <port_probes>"),
        ("<port_probes/>", "names no <port_probe>"),
        (
            "<port_probes><port_probe name='a' scanner='GenericTCP' service='a' port='1'/></port_probes>",
            "needs 'protocol'",
        ),
        (
            "<port_probes><port_probe name='a' scanner='Nmap' service='a' port='1' protocol='tcp'/></port_probes>",
            "unknown scanner",
        ),
        (
            "<port_probes><port_probe name='a' scanner='SNMP' service='a' port='161' protocol='tcp'/></port_probes>",
            "scans udp",
        ),
        (
            "<port_probes><port_probe name='a' scanner='GenericTCP' service='a' port='0' protocol='tcp'/></port_probes>",
            "outside",
        ),
        (
            "<port_probes><port_probe name='a' scanner='GenericTCP' service='a' port='ssh' protocol='tcp'/></port_probes>",
            "not a number",
        ),
        (
            "<port_probes><port_probe name='a' scanner='GenericTCP' service='a' port='1' protocol='tcp' prio='1'/></port_probes>",
            "unknown attribute 'prio'.*capture",
        ),
        (
            "<port_probes><port_probe name='a b' scanner='GenericTCP' service='a' port='1' protocol='tcp'/></port_probes>",
            "letters",
        ),
        (
            "<port_probes><port_probe name='a' scanner='GenericTCP' service='a' port='1' protocol='tcp'/>"
            "<port_probe name='a' scanner='GenericTCP' service='a' port='2' protocol='tcp'/></port_probes>",
            "listed twice",
        ),
        ("<!DOCTYPE x [<!ENTITY e 'x'>]><port_probes/>", "DTDs"),
        ("<port_probes>", "not well-formed"),
    ],
)
def test_malformed_port_probes_are_refused(tmp_path: Path, port_probes: str, message: str) -> None:
    with pytest.raises(PayloadError, match=message):
        run(job(port_probes, ["127.0.0.1"]), ctx(tmp_path))


def test_fields_as_child_elements_and_port_lists(tmp_path: Path) -> None:
    closed = closed_port()
    with listener() as a:
        port = a.getsockname()[1]
        probes = (
            "<port_probes><port_probe><name>web</name><scanner>GenericTCP</scanner><service>www</service>"
            f"<port>{closed},{port}</port><protocol>TCP</protocol></port_probe></port_probes>"
        )
        got = run(job(probes, ["127.0.0.1"]), ctx(tmp_path))
    results = [(x.port, x.result) for x in got["127.0.0.1"].scanners]
    assert results == [(str(closed), "refused"), (str(port), "open")]  # one scanner per listed port


@pytest.mark.parametrize(
    ("name", "value"),
    [("shazzam_report_dead", "yes"), ("SNMP_taps", "0"), ("BannerTCP_waitForConnectMS", "-1")],
)
def test_bad_tuning_parameters_are_refused(tmp_path: Path, name: str, value: str) -> None:
    with pytest.raises(PayloadError, match=name):
        run(job(spec(("p", "GenericTCP", "p", "1", "tcp")), ["127.0.0.1"], **{name: value}), ctx(tmp_path))


def test_unknown_scanner_parameters_are_ignored_and_echoed(tmp_path: Path) -> None:
    j = job(
        spec(("p", "GenericTCP", "p", str(closed_port()), "tcp")),
        ["127.0.0.1"],
        NBT_waitForResponseMS="x",
        debug="true",
    )
    element = asyncio.run(TcpScanProbe().run(j, ctx(tmp_path)))
    root = ET.fromstring(
        build_results(result=element, echo_record={}, parameters=j.parameters, probe_time_ms=1, error=None)
    )
    assert root.find("parameters/parameter[@name='NBT_waitForResponseMS']") is not None


def snmp_creds(s: SnmpServer) -> MemCredentials:
    return MemCredentials(
        MemCredential("v2bad", "snmp-community", None, (b"wrong-community",)),
        MemCredential("v2", "snmp-community", None, (s.community.encode(),)),
        MemCredential(
            "v3",
            "snmp-usm",
            s.v3_user,
            (s.v3_auth.encode(), s.v3_priv.encode()),
            {"auth_protocol": "SHA-256", "priv_protocol": "AES"},
        ),
    )


def snmp_spec(port: int) -> str:
    return spec(("snmp", "SNMP", "snmp", str(port), "udp"))


def attempts(c: ProbeContext) -> list[tuple[object, object]]:
    assert isinstance(c.audit, ProbeAudit)
    return [(f["alias"], f["outcome"]) for e, f in c.audit.events if e == "credential.attempt"]


def test_snmp_scanner_reads_sys_descr_with_the_rules_community(tmp_path: Path, snmpd: SnmpServer) -> None:
    c = ctx(
        tmp_path,
        rule("127.0.0.1/32", ("snmp",), ((snmpd.port, snmpd.port),), ("v2bad", "v2")),
        creds=snmp_creds(snmpd),
    )
    started = time.monotonic()
    got = run(job(snmp_spec(snmpd.port), ["127.0.0.1"], SNMP_taps="2", SNMP_tapIntervalMS="200"), c)
    host = got["127.0.0.1"]
    assert (
        host.active and host.value("snmp.snmp.result") == "open" and attr(host, "snmp", "protocol") == "udp"
    )
    assert (host.value("snmp.snmp.sysDescr") or "").startswith("Linux")
    # The wrong community is tried first (rule order) and gets silence for SNMP_taps x SNMP_tapIntervalMS.
    assert attempts(c) == [("v2bad", "rejected"), ("v2", "accepted")]
    assert 0.35 <= time.monotonic() - started < 5
    # The winner is remembered: the next scan of this agent tries it first and only.
    run(job(snmp_spec(snmpd.port), ["127.0.0.1"], SNMP_taps="1", SNMP_tapIntervalMS="200"), c)
    assert attempts(c)[2:] == [("v2", "accepted")]


def test_snmp_scanner_with_a_usm_credential(tmp_path: Path, snmpd: SnmpServer) -> None:
    c = ctx(
        tmp_path,
        rule("127.0.0.1/32", ("snmp",), ((snmpd.port, snmpd.port),), ("v3",)),
        creds=snmp_creds(snmpd),
    )
    host = run(job(snmp_spec(snmpd.port), ["127.0.0.1"]), c)["127.0.0.1"]
    assert host.value("snmp.snmp.result") == "open" and (host.value("snmp.snmp.sysDescr") or "").startswith(
        "Linux"
    )


def test_snmp_scanner_with_a_v1_community_only_where_the_rule_allows_v1(
    tmp_path: Path, snmpd: SnmpServer
) -> None:
    """The scanner's v1 goes through the same opener (midbox's own codec since pysnmp left the binary)."""
    creds = MemCredentials(
        MemCredential("v1", "snmp-community", None, (snmpd.community.encode(),), {"version": "1"}),
        MemCredential("v1bad", "snmp-community", None, (b"wrong-community",), {"version": "1"}),
    )
    plain = rule("127.0.0.1/32", ("snmp",), ((snmpd.port, snmpd.port),), ("v1bad", "v1"))
    params = {"SNMP_taps": "1", "SNMP_tapIntervalMS": "200"}
    c = ctx(tmp_path, plain, creds=creds)
    assert run(job(snmp_spec(snmpd.port), ["127.0.0.1"], **params), c) == {}  # never tried without snmp_v1
    assert attempts(c) == [("v1bad", "rejected"), ("v1", "rejected")]
    c = ctx(tmp_path, dataclasses.replace(plain, snmp_v1=True), creds=creds)
    host = run(job(snmp_spec(snmpd.port), ["127.0.0.1"], **params), c)["127.0.0.1"]
    assert host.value("snmp.snmp.result") == "open"
    assert (host.value("snmp.snmp.sysDescr") or "").startswith("Linux")
    assert attempts(c) == [("v1bad", "rejected"), ("v1", "accepted")]


def test_snmp_without_an_answer_is_timed_out_and_the_address_dead(tmp_path: Path, snmpd: SnmpServer) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))  # bound, never answers: no ICMP either
        port = silent.getsockname()[1]
        c = ctx(tmp_path, rule("127.0.0.1/32", ("snmp",), creds=("v2",)), creds=snmp_creds(snmpd))
        params = {"SNMP_taps": "1", "SNMP_tapIntervalMS": "100"}
        assert run(job(snmp_spec(port), ["127.0.0.1"], **params), c) == {}
        host = run(job(snmp_spec(port), ["127.0.0.1"], shazzam_report_dead="true", **params), c)["127.0.0.1"]
    assert not host.alive and host.value("snmp.snmp.result") == "timed_out"
    assert host.value("snmp.snmp.sysDescr") is None


def test_snmp_is_checked_as_snmp_and_needs_rule_credentials(tmp_path: Path, snmpd: SnmpServer) -> None:
    closed = closed_port()
    probes = spec(
        ("snmp", "SNMP", "snmp", str(snmpd.port), "udp"), ("t", "GenericTCP", "t", str(closed), "tcp")
    )
    # A rule for tcp only: the SNMP pair is denied and left out, the TCP pair is scanned.
    c = ctx(tmp_path, rule("127.0.0.1/32", ("tcp",), creds=("v2",)), creds=snmp_creds(snmpd))
    host = run(job(probes, ["127.0.0.1"]), c)["127.0.0.1"]
    assert host.value("snmp.snmp.result") is None and host.value("t.t.result") == "refused"
    assert attempts(c) == []
    # SNMP allowed but no rule names a credential: an io_error that says what to add.
    c = ctx(tmp_path, rule("127.0.0.1/32", ("tcp", "snmp")), creds=snmp_creds(snmpd))
    host = run(job(probes, ["127.0.0.1"]), c)["127.0.0.1"]
    assert host.value("snmp.snmp.result") == "io_error"
    assert "lists 'credentials'" in (host.value("snmp.snmp.error_msg") or "")


def test_the_devinstance_output_scanned_and_read_by_its_sensor(
    tmp_path: Path, sshd: SshServer, snmpd: SnmpServer
) -> None:
    closed = closed_port()
    out = shazzam_output(
        ["127.0.0.1"],
        default_port_probes(ssh=sshd.port, snmp=snmpd.port, http=closed, https=closed, generic=closed),
    )
    j = Job("0" * 32, out.topic, out.name, out.source, "mid.server.test", parameters=out.parameters)
    c = ctx(tmp_path, rule("127.0.0.1/32", ("tcp", "snmp"), creds=("v2",)), creds=snmp_creds(snmpd))
    host = run(j, c)["127.0.0.1"]
    assert host.value("https.https.result") == "refused" and host.value("wmi.epmap.result") == "refused"
    launches = [(launch.classifier, launch.port) for launch in classifiers_to_launch(host)]
    assert launches == [("UNIX - Classify", sshd.port), ("SNMP - Classify", snmpd.port)]
