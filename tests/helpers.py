"""Shared test parts: a PKI, the development instance in-process, a target HTTP server, configs."""

from __future__ import annotations

import asyncio
import datetime as dt
import http.server
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from appliance.app import run_appliance
from appliance.config import Config
from appliance.interfaces import CredentialSource
from appliance.limits import Limits
from appliance.probes.base import MemoryAudit
from appliance.runstats import RunnerStats
from devinstance import pki
from devinstance.server import DevInstance, InstanceState, server_context
from devinstance.store import Store
from devinstance.transport import in_process_client
from tests.support.fakes import NoCredentials
from tests.support.signed import signed_config

TEST_SEAL_KEY = bytes(range(32))
NAME = "edge-01"
AGENT = f"mid.server.{NAME}"


@dataclass(frozen=True)
class Pki:
    directory: Path
    ca: pki.Issued
    server: pki.Issued
    client: pki.Issued


def make_pki(directory: Path) -> Pki:
    ca = pki.ensure_ca(directory)
    server = pki.issue(ca, directory, "server", "localhost", server=True)
    client = pki.issue(ca, directory, "appliance", AGENT, server=False)
    return Pki(directory, ca, server, client)


@contextmanager
def dev_instance(p: Pki, db: Path, **ctx_args: bool) -> Iterator[DevInstance]:
    store = Store(db)
    ctx = server_context(p.ca.cert, p.server.cert, p.server.key, **ctx_args)
    with DevInstance(InstanceState(store), ctx) as instance:
        yield instance
    store.close()


def config_text(url: str, p: Pki, allow: str = "", extra_instance: str = "", version: int = 1) -> str:
    expires = (dt.datetime.now(dt.UTC) + dt.timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"""version = {version}
expires = {expires}

[appliance]
name = "{NAME}"
max_concurrent_probes = 16

[instance]
url = "{url}"
ca_file = "{p.ca.cert}"
client_cert = "{p.client.cert}"
client_key = "{p.client.key}"
poll_interval_s = 0.05
{extra_instance}
{allow}
"""


def trusted(text: str, source: Path) -> Config:
    """A Config for tests of the runtime, signed and verified for real; signature checks have their own tests."""
    return signed_config(text, source)


LOOPBACK_HTTP = """
[[allow]]
cidr = "127.0.0.0/8"
probes = ["http"]
ports = ["1-65535"]
"""


def fast_limits(**overrides: float) -> Limits:
    base: dict[str, float] = {
        "concurrent_probes": 16,
        "shutdown_deadline_s": 2.0,
        "backoff_base_s": 0.05,
        "backoff_cap_s": 0.5,
        "probe_timeout_s": 10.0,
        "instance_timeout_s": 5.0,
    }
    base.update(overrides)
    return Limits(**base)  # type: ignore[arg-type]


def run_until(
    config: Config,
    done: Callable[[], bool],
    *,
    state_dir: Path,
    timeout: float = 20.0,
    limits: Limits | None = None,
    audit: MemoryAudit | None = None,
    credentials: CredentialSource | None = None,
    in_process: InstanceState | None = None,
) -> RunnerStats:
    """Run the appliance until ``done()`` is true (checked every 20 ms), then shut it down.

    With ``in_process``, the development instance's handler answers through an in-process transport
    (as this appliance's certificate would be seen) instead of over a socket with real mTLS."""

    async def scenario() -> RunnerStats:
        stop = asyncio.Event()
        http = in_process_client(in_process, agent=AGENT) if in_process is not None else None
        task = asyncio.create_task(
            run_appliance(
                config,
                state_dir=state_dir,
                audit=audit or MemoryAudit(),
                credentials=credentials or NoCredentials(),
                stop=stop,
                limits=limits or fast_limits(),
                seal_key=TEST_SEAL_KEY,
                http=http,
            )
        )
        deadline = time.monotonic() + timeout
        while not done() and time.monotonic() < deadline and not task.done():
            await asyncio.sleep(0.02)
        stop.set()
        try:
            return await asyncio.wait_for(task, 30)
        finally:
            if http is not None:
                await http.aclose()

    return asyncio.run(scenario())


class TargetHandler(http.server.BaseHTTPRequestHandler):
    """A local HTTP target: /hello, /big, /slow, /redirect?to=URL, /echo."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        self.do_GET()

    def do_GET(self) -> None:
        if self.path.startswith("/redirect?to="):
            self.send_response(302)
            self.send_header("Location", self.path.split("=", 1)[1])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.path == "/slow":
            time.sleep(3)
        if self.path.startswith("/work?ms="):
            time.sleep(int(self.path.split("=", 1)[1]) / 1000)
        body = b"x" * 10_000_000 if self.path == "/big" else f"hello {self.headers.get('Host')}".encode()
        if self.path == "/echo":
            body = repr(sorted(self.headers.items())).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _TargetServer(http.server.ThreadingHTTPServer):
    request_queue_size = 128  # socketserver's 5 drops SYNs under a burst of 50 new connections

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # clients that go away mid-answer (timeouts, kill -9) are part of the tests

    def get_request(self) -> tuple[socket.socket, object]:
        sock, addr = super().get_request()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock, addr


@contextmanager
def http_target() -> Iterator[str]:
    server = _TargetServer(("127.0.0.1", 0), TargetHandler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def params(**values: str) -> str:
    import xml.etree.ElementTree as ET

    root = ET.Element("parameters")
    for k, v in values.items():
        ET.SubElement(root, "parameter", name=k, value=v)
    return ET.tostring(root, encoding="unicode")


def inputs(store: Store) -> list[dict[str, str]]:
    return store.query("ecc_queue", "queue=input^topic!=queue.processing^ORDERBYsys_created_on")
