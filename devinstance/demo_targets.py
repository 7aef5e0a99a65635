"""The demo's local targets on loopback: a web server with one Basic-auth page, and net-snmp's snmpd.

The credentials below are the targets' own (the demo stores them in the appliance's credential store
through ``midbox creds add``); they protect nothing outside this one run.
"""

from __future__ import annotations

import base64
import http.server
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

WEB_USER = "demo"
WEB_SECRET = "demo-web-secret-not-for-production"  # noqa: S105 - the demo's own local target
SNMP_USER = "demo-snmp"
SNMP_AUTH = "demo-snmp-auth-pass"
SNMP_PRIV = "demo-snmp-priv-pass"


class WebTarget(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        expected = "Basic " + base64.b64encode(f"{WEB_USER}:{WEB_SECRET}".encode()).decode()
        if self.path == "/private":
            if self.headers.get("Authorization") != expected:
                self._send(401, b"who are you?")
                return
            self._send(200, b"welcome, demo")
            return
        self._send(200, b"hello from a local target")

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def web_target() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), WebTarget)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def snmp_target(directory: Path, extra_config: str = "") -> Iterator[int | None]:
    """net-snmp's snmpd on a loopback port with one v3 user, if snmpd is installed."""
    snmpd = shutil.which("snmpd") or ("/usr/sbin/snmpd" if Path("/usr/sbin/snmpd").exists() else None)
    if snmpd is None:
        print("    (snmpd is not installed: the SNMP job is left out)")
        yield None
        return
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "persist").mkdir(exist_ok=True)
    port = free_udp_port()
    conf = directory / "snmpd.conf"
    conf.write_text(
        f'createUser {SNMP_USER} SHA-256 "{SNMP_AUTH}" AES "{SNMP_PRIV}"\n'
        f"rouser {SNMP_USER} priv\nsysLocation midbox demo rack\n{extra_config}",
        encoding="utf-8",
    )
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "SNMP_PERSISTENT_DIR": str(directory / "persist"),
        "MIBS": "",
    }
    with (directory / "snmpd.log").open("wb") as log:
        proc = subprocess.Popen(  # noqa: S603
            [snmpd, "-f", "-C", "-c", str(conf), "-I", "-smux", "-Lo", f"udp:127.0.0.1:{port}"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        time.sleep(0.5)
        if proc.poll() is not None:
            print("    (snmpd did not start: the SNMP job is left out)")
            yield None
        else:
            yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # free a moment ago and nobody listens on it: refused
