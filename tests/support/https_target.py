"""A loopback HTTPS target with its own CA, and an allow rule for it."""

from __future__ import annotations

import http.server
import ipaddress
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from devinstance import pki
from hardening.policy import AllowRule, PortRange


class Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"hello over TLS"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def https_target(directory: Path, names: tuple[str, ...] = ("127.0.0.1",)) -> Iterator[tuple[int, Path]]:
    ca = pki.ensure_ca(directory)
    leaf = pki.issue(ca, directory, "target", names[0], server=True, hosts=names)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hello)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(leaf.cert), str(leaf.key))
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], ca.cert
    finally:
        server.shutdown()
        server.server_close()


def rule(port: int, ca: Path | None, ca_sha256: str | None = None) -> AllowRule:
    return AllowRule(
        networks=(ipaddress.ip_network("127.0.0.1/32"),),
        hosts=(),
        probes=frozenset({"http"}),
        ports=(PortRange(port, port),),
        credentials=(),
        tls_ca=ca,
        tls_ca_sha256=ca_sha256,
    )
