"""Shared fixtures: real daemons on loopback, an in-memory credential store, a loopback-only policy,
a DNS whose answers the test sets, and listeners that record whether anything reached them."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from appliance.errors import ProbeError
from appliance.interfaces import Credential
from appliance.limits import Limits
from appliance.probes.base import Job, MemoryAudit, ProbeContext
from appliance.probes.http import HttpProbe
from appliance.probes.resolver import Resolver, system_resolve
from hardening.policy import AllowRule, IPAddress, Policy, PortRange
from tests.daemons import SnmpServer, SshServer, run_snmpd, run_sshd


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshServer]:
    with run_sshd(tmp_path_factory.mktemp("sshd")) as server:
        yield server


@pytest.fixture(scope="session")
def snmpd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SnmpServer]:
    with run_snmpd(tmp_path_factory.mktemp("snmpd")) as server:
        yield server


@dataclass(frozen=True)
class MemCredential:
    alias: str
    type: str
    user: str | None
    secrets: tuple[bytes, ...]
    options: Mapping[str, str] = field(default_factory=dict)

    def secret(self, index: int = 0) -> bytes:
        return self.secrets[index]  # IndexError (a LookupError) for an absent optional secret


class MemCredentials:
    """An in-memory CredentialSource; counts lookups so tests can prove a denied job never read one."""

    def __init__(self, *creds: MemCredential) -> None:
        self._creds = {c.alias: c for c in creds}
        self.lookups: list[str] = []

    def lookup(self, alias: str) -> Credential:
        self.lookups.append(alias)
        try:
            return self._creds[alias]
        except KeyError:
            raise ProbeError(f"credential {alias!r} is not in this appliance's store") from None


def loopback_rule(
    probes: tuple[str, ...], ports: tuple[tuple[int, int], ...], creds: tuple[str, ...]
) -> AllowRule:
    return AllowRule(
        networks=(ipaddress.ip_network("127.0.0.1/32"),),
        hosts=(),
        probes=frozenset(probes),
        ports=tuple(PortRange(lo, hi) for lo, hi in ports),
        credentials=tuple(creds),
    )


class ProbeAudit(MemoryAudit):
    """What a probe's audit sink is in the appliance: every event names the job (see JobAudit)."""

    def record(self, event: str, fields: Mapping[str, object]) -> None:
        super().record(event, {"job": "0" * 32, "topic": "test", **fields})


def make_ctx(
    policy: Policy,
    creds: MemCredentials,
    state_dir: Path,
    limits: Limits | None = None,
    resolver: Resolver = system_resolve,
) -> ProbeContext:
    return ProbeContext(
        policy=policy,
        credentials=creds,
        audit=ProbeAudit(),
        limits=limits or Limits(),
        state_dir=state_dir,
        resolver=resolver,
    )


class FixedDns:
    """A resolver (the ProbeContext seam) whose answers the test sets; other names fail as NXDOMAIN."""

    def __init__(self) -> None:
        self._answers: dict[str, list[IPAddress]] = {}
        self.asked: list[str] = []

    def set(self, name: str, *addresses: str) -> None:
        self._answers[name] = [ipaddress.ip_address(a) for a in addresses]

    async def __call__(self, host: str) -> list[IPAddress]:
        self.asked.append(host)
        try:
            return list(self._answers[host])
        except KeyError:
            raise ProbeError(f"cannot resolve target {host!r}: no such name in the test's DNS") from None


@pytest.fixture
def dns() -> FixedDns:
    return FixedDns()


class Listener:
    """A TCP or UDP socket on loopback that records every connection or datagram and answers nothing."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.port: int = sock.getsockname()[1]
        self.seen: list[tuple[str, int]] = []
        self._lock = threading.Lock()

    def hits(self) -> list[tuple[str, int]]:
        with self._lock:
            return list(self.seen)

    def _serve(self) -> None:
        while True:
            try:
                if self.sock.type == socket.SOCK_STREAM:
                    conn, peer = self.sock.accept()
                    conn.close()
                else:
                    _, peer = self.sock.recvfrom(65535)
            except OSError:
                return  # closed by the fixture
            with self._lock:
                self.seen.append(peer)


@contextmanager
def listening(address: str, kind: socket.SocketKind, port: int = 0) -> Iterator[Listener]:
    sock = socket.socket(socket.AF_INET, kind)
    try:
        sock.bind((address, port))
        if kind == socket.SOCK_STREAM:
            sock.listen(16)
        listener = Listener(sock)
        thread = threading.Thread(target=listener._serve, daemon=True)
        thread.start()
        yield listener
    finally:
        if kind == socket.SOCK_STREAM:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        sock.close()


@contextmanager
def listener_pair(kind: socket.SocketKind) -> Iterator[tuple[Listener, Listener]]:
    """One listener on 127.0.0.1 and one on 127.0.0.2, on the same port (as one name's two addresses)."""
    for _ in range(20):
        with contextlib.ExitStack() as stack:
            first = stack.enter_context(listening("127.0.0.1", kind))
            try:
                second = stack.enter_context(listening("127.0.0.2", kind, first.port))
            except OSError:
                continue  # that port is taken on 127.0.0.2: try another
            yield first, second
            return
    raise RuntimeError("no port free on both 127.0.0.1 and 127.0.0.2")


@contextmanager
def listener(host: str = "127.0.0.1", backlog: int = 64) -> Iterator[socket.socket]:
    """A TCP socket listening on ``host`` (port from the kernel) that never accepts by itself."""
    s = socket.socket()
    s.bind((host, 0))
    s.listen(backlog)
    try:
        yield s
    finally:
        s.close()


@contextmanager
def unanswered_port() -> Iterator[int]:
    """A loopback port whose SYNs get no answer: a listener with a full accept queue drops them."""
    with listener(backlog=0) as s:
        port = int(s.getsockname()[1])
        fillers = []
        for _ in range(3):
            f = socket.socket()
            f.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                f.connect(("127.0.0.1", port))
            fillers.append(f)
        time.sleep(0.2)
        try:
            yield port
        finally:
            for f in fillers:
                f.close()


def closed_port() -> int:
    """A loopback port nothing listens on (connects are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_job(topic: str, name: str, source: str, **params: str) -> Job:
    return Job(
        sys_id="0" * 32,
        topic=topic,
        name=name,
        source=source,
        agent="mid.server.test",
        parameters=tuple(params.items()),
    )


def http_fetch(ctx: ProbeContext, url: str, **params: str) -> ET.Element:
    """One RESTProbe job for ``url`` on a fresh HTTP probe, closed afterwards."""
    probe = HttpProbe()

    async def go() -> ET.Element:
        try:
            return await probe.run(make_job("RESTProbe", "http", "127.0.0.1", url=url, **params), ctx)
        finally:
            await probe.aclose()

    return asyncio.run(go())


def http_body(result: ET.Element) -> str:
    return result.findtext("body") or ""
